/**
 * Keeps `npm run bench` from rotting: a run with tiny counts (`--smoke`) must produce every figure
 * the issue names as a finite number. Nothing here is timed: benchmarks are not tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const NAMED_FIGURES = [
  'hitVsRawP50',
  'throughputVsRaw',
  'clusterHitVsRawP50',
  'clusterThroughputVsRaw',
  'hitSpeedupVsDynamo',
  'stormDynamoReads',
  'zipfHitRatio',
  'zipfHitRatioVsIdeal',
  'dynamoReadsPerOwnWrite',
  'putVsDynamoP50',
  'largestBundleKiB',
  'initMs',
  'worstBodyVsJsonParse',
];

// A hang guard, not a timing: the run took 85 s beside a loaded machine's other tests (load average 13),
// its cluster suite (a Redis Cluster started and stopped) about 8 s of it.
test('bench --smoke writes every named figure as a finite number', { timeout: 160_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  try {
    const out = join(dir, 'smoke.json');
    const args = ['--import', 'tsx', 'bench/run.ts', '--smoke', '--out', out];
    // Reuse the test run's DynamoDB Local rather than start a second JVM.
    if (process.env.DYNAMODB_ENDPOINT) args.push('--dynamodb-endpoint', process.env.DYNAMODB_ENDPOINT);
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, args, { cwd: repoRoot, timeout: 150_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`bench --smoke failed: ${err.message}\n${stdout}\n${stderr}`));
        else resolve({ stdout, stderr });
      });
    });
    const result = JSON.parse(readFileSync(out, 'utf8')) as { figures: Record<string, unknown>; mode: string };
    assert.equal(result.mode, 'smoke');
    for (const name of NAMED_FIGURES) {
      const v = result.figures[name];
      assert.ok(typeof v === 'number' && Number.isFinite(v), `figure ${name} is ${String(v)}\n${stderr}`);
      assert.ok(stdout.includes(`\`${name}\``), `the markdown table names ${name}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
