/**
 * One bench run: services up, every measurement, figures out. See bench/run.ts for the options and
 * each module for its method: latency.ts (floor, library, handler, DynamoDB), cluster.ts (cluster
 * mode's hit on a Redis Cluster of its own), storm.ts, zipf.ts, coldstart.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startStack } from './setup.ts';
import { runLatency, type LatencyCounts, type LatencyResult } from './latency.ts';
import { runClusterHit, type ClusterCounts, type ClusterResult } from './cluster.ts';
import { runStorm, type StormCounts, type StormResult } from './storm.ts';
import { runZipf, type ZipfCounts, type ZipfResult } from './zipf.ts';
import { runColdStart, type ColdResult } from './coldstart.ts';
import { latencyDistributions } from './charts.ts';
import { runHostile, type HostileCounts, type HostileResult } from './hostile.ts';
import { runWrites, type WritesCounts, type WritesResult } from './writes.ts';
import { median } from './stats.ts';
import { NAMED_FIGURES, TARGETS, markdown, meets } from './report.ts';

export type Mode = 'full' | 'quick' | 'smoke';

export interface Counts {
  latency: LatencyCounts;
  cluster: ClusterCounts;
  storm: StormCounts;
  zipf: ZipfCounts;
  coldRuns: number;
  hostile: HostileCounts;
  writes: WritesCounts;
}

const ZIPF = { concurrency: 64, exponent: 1, writeFraction: 0.05 };

export const COUNTS: Record<Mode, Counts> = {
  full: {
    latency: { repeats: 5, hitKeys: 1000, hitC1: 5000, hitC64: 50_000, dynC1: 500, dynC64: 3000, batchC1: 300, batchC64: 1000 },
    cluster: { repeats: 5, keys: 1000, hitC1: 5000, hitC64: 50_000 },
    storm: { size: 500, rounds: 5, containers: 5 },
    zipf: { keys: 100_000, ops: 200_000, segments: 5, ...ZIPF },
    coldRuns: 9,
    hostile: { repeats: 9 },
    writes: { keys: 1000, paired: 300, repeats: 5 },
  },
  quick: {
    latency: { repeats: 3, hitKeys: 1000, hitC1: 2000, hitC64: 20_000, dynC1: 200, dynC64: 1000, batchC1: 100, batchC64: 300 },
    cluster: { repeats: 3, keys: 300, hitC1: 2000, hitC64: 10_000 },
    storm: { size: 500, rounds: 3, containers: 5 },
    zipf: { keys: 20_000, ops: 40_000, segments: 3, ...ZIPF },
    coldRuns: 5,
    hostile: { repeats: 5 },
    writes: { keys: 400, paired: 150, repeats: 3 },
  },
  smoke: {
    latency: { repeats: 1, hitKeys: 50, hitC1: 50, hitC64: 200, dynC1: 10, dynC64: 64, batchC1: 3, batchC64: 8 },
    cluster: { repeats: 1, keys: 50, hitC1: 50, hitC64: 200 },
    storm: { size: 100, rounds: 1, containers: 2 },
    zipf: { keys: 500, ops: 1000, segments: 1, ...ZIPF },
    coldRuns: 1,
    hostile: { repeats: 1, bytes: 65_536 },
    writes: { keys: 20, paired: 10, repeats: 1 },
  },
};

/** The operations the latency chart draws, and their names there. */
const CHARTED: [string, string][] = [
  ['raw.hget', 'raw Redis HGET'],
  ['library.get-hit', 'library get, hit'],
  ['library.get-miss', 'library get, miss + fill'],
  ['dynamo.getitem', 'DynamoDB Local GetItem'],
];

const SUITES = ['hit', 'handler', 'dynamo', 'batch', 'ops', 'cluster', 'storm', 'zipf', 'writes', 'cold', 'hostile'];

export interface MainOptions {
  mode: Mode;
  out: string | undefined;
  only: string[] | undefined;
  dynamoEndpoint: string | undefined;
  /** Where `npm run package` leaves the zips (default .serverless). */
  serverlessDir: string | undefined;
  /** Size of the hostile suite's worst bodies (default HTTP_MAX_BODY_BYTES). */
  hostileBytes?: number;
  argv: string[];
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const log = (m: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
};

export async function main(opts: MainOptions): Promise<void> {
  const started = Date.now();
  const counts = COUNTS[opts.mode];
  for (const s of opts.only ?? []) if (!SUITES.includes(s)) throw new Error(`--only: unknown suite '${s}' (one of ${SUITES.join(', ')})`);
  const only = (s: string): boolean => opts.only === undefined || opts.only.includes(s);
  const warnings: string[] = [];
  const loadStart = loadavg();

  const stack = await startStack(log, opts.dynamoEndpoint);
  let latency: LatencyResult | undefined;
  let cluster: ClusterResult | undefined;
  let storm: StormResult | undefined;
  let zipf: ZipfResult | undefined;
  let cold: ColdResult | undefined;
  let hostile: HostileResult | undefined;
  let writes: WritesResult | undefined;
  try {
    if (['hit', 'handler', 'dynamo', 'batch', 'ops'].some(only)) latency = await runLatency(stack, counts.latency, log, only);
    if (only('cluster')) cluster = await runClusterHit(stack, counts.cluster, log);
    if (only('storm')) storm = await runStorm(stack, counts.storm, log);
    if (only('zipf')) zipf = await runZipf(stack, counts.zipf, log);
    if (only('writes')) writes = await runWrites(stack, counts.writes, log);
    if (only('hostile')) hostile = await runHostile(stack, counts.hostile, log, opts.hostileBytes ?? counts.hostile.bytes);
    if (only('cold')) {
      // A container's environment: the stack's nodes and tables, as the deployed functions get them.
      cold = await runColdStart(
        repoRoot,
        opts.serverlessDir ? resolve(opts.serverlessDir) : join(repoRoot, '.serverless'),
        { ...stack.env, POWERTOOLS_SERVICE_NAME: 'bench' },
        counts.coldRuns,
        log,
      );
    }
  } finally {
    await stack.stop();
    if (latency?.handlerNote === undefined && only('handler')) {
      const { sharedItemCache } = await import('../lib/item-cache.ts');
      await sharedItemCache()
        .close()
        .catch(() => {});
    }
  }

  // --- figures -------------------------------------------------------------------------------
  const figures: Record<string, number> = {};
  const stats = { ...latency?.stats, ...cluster?.stats };
  const put = (prefix: string, key: string): void => {
    for (const c of ['c1', 'c64']) {
      const s = stats[`${key}.${c}`];
      if (!s) continue;
      const C = c.toUpperCase();
      figures[`${prefix}P50Us${C}`] = s.p50Us;
      figures[`${prefix}P99Us${C}`] = s.p99Us;
      figures[`${prefix}OpsPerSec${C}`] = s.opsPerSec;
    }
  };
  if (latency) {
    for (const [k, v] of Object.entries(latency.ratios)) figures[k] = median(v);
    put('raw', 'raw.hget');
    put('rawParsed', 'raw.hget-parse');
    put('hit', 'library.get-hit');
    put('handlerHit', 'handler.get-hit');
    put('miss', 'library.get-miss');
    put('put', 'library.put');
    put('update', 'library.update');
    put('delete', 'library.delete');
    put('batchGet100', 'library.batch-get-100');
    put('dynamoGetItem', 'dynamo.getitem');
    put('dynamoBatchGetItem100', 'dynamo.batchgetitem-100');
    for (const [what, n] of Object.entries(latency.anomalies)) warnings.push(`${n} × ${what}`);
    if (latency.handlerNote) warnings.push(`handler not measured: ${latency.handlerNote}`);
  }
  if (cluster) {
    figures.clusterHitVsRawP50 = median(cluster.ratios.hitVsRawP50);
    figures.clusterHitVsRawP99 = median(cluster.ratios.hitVsRawP99);
    figures.clusterThroughputVsRaw = median(cluster.ratios.throughputVsRaw);
    put('clusterRaw', 'cluster.raw.hget');
    put('clusterHit', 'cluster.library.get-hit');
    for (const [what, n] of Object.entries(cluster.anomalies)) warnings.push(`${n} × ${what}`);
  }
  if (storm) {
    figures.stormDynamoReads = storm.median;
    figures.stormDynamoReadsMax = storm.max;
    if (storm.wrongAnswers > 0) warnings.push(`storm: ${storm.wrongAnswers} answers were not the current version`);
  }
  if (zipf) {
    figures.zipfHitRatio = zipf.hitRatio;
    figures.zipfIdealHitRatio = zipf.idealHitRatio;
    figures.zipfHitRatioVsIdeal = zipf.hitRatioVsIdeal;
    figures.zipfHitRatioOverall = zipf.hitRatioOverall;
    figures.zipfReadUnitsWith = zipf.readUnitsWith;
    figures.zipfReadUnitsWithout = zipf.readUnitsWithout;
    figures.zipfReadUnitsRatio = zipf.readUnitsRatio;
    figures.zipfOpsPerSec = zipf.opsPerSec;
  }
  if (writes) {
    figures.dynamoReadsPerOwnWrite = writes.dynamoReadsPerOwnWrite;
    figures.dynamoReadsPerOwnWriteNested = writes.dynamoReadsPerOwnWriteNested;
    figures.putVsDynamoP50 = writes.putVsDynamoP50;
    figures.putVsConditionalPutP50 = writes.putVsConditionalPutP50;
    figures.putFloorVsDynamoP50 = writes.putFloorVsDynamoP50;
    figures.putOneTripFloorVsDynamoP50 = writes.putOneTripFloorVsDynamoP50;
    figures.putVsFloorP50 = writes.putVsFloorP50;
    figures.updateVsDynamoP50 = writes.updateVsDynamoP50;
    figures.deleteVsDynamoP50 = writes.deleteVsDynamoP50;
    figures.redisRoundTripsPerPut = writes.redisRoundTripsPerWrite.put;
    figures.redisRoundTripsPerUpdate = writes.redisRoundTripsPerWrite.update;
    figures.redisRoundTripsPerDelete = writes.redisRoundTripsPerWrite.delete;
    figures.redisRoundTripP50UsBesidePuts = writes.redisRoundTripP50Us;
  }
  if (cold) {
    figures.largestBundleKiB = cold.largestBundleKiB;
    figures.initMs = cold.initMs;
    if (cold.bare) {
      figures.bareBundleKiB = cold.bare.kib;
      figures.bareInitMs = cold.bare.initMedianMs;
      figures.initVsBare = cold.initMs / cold.bare.initMedianMs;
      figures.largestBundleVsBare = cold.largestBundleKiB / cold.bare.kib;
    }
    if (cold.note) warnings.push(`cold start: ${cold.note}`);
  }

  if (hostile) {
    figures.worstBodyVsJsonParse = hostile.worst;
    figures.worstBodyWallVsJsonParse = hostile.worstWall;
    figures.worstBodyCpuVsJsonParse = hostile.worstCpu;
    figures.worstBodyCpuGrowth = hostile.worstCpuGrowth;
    for (const [kind, k] of Object.entries(hostile.kinds)) {
      figures[`bodyVsJsonParse.${kind}`] = k.ratio;
      figures[`bodyWallVsJsonParse.${kind}`] = k.wallRatio;
      figures[`bodyCpuVsJsonParse.${kind}`] = k.cpuRatio;
      if (k.status >= 500) warnings.push(`hostile body ${kind}: answered ${k.status}`);
    }
  }

  const machine = machineInfo();
  const durationS = (Date.now() - started) / 1000;
  const command = `npm run bench${opts.argv.length ? ` -- ${opts.argv.join(' ')}` : ''}`;
  const header = [
    `## Bench (${opts.mode}) — ${new Date().toISOString()}`,
    '',
    `\`${command}\` · ${machine.nproc} × ${machine.cpu}, ${machine.memoryGiB.toFixed(1)} GiB · Node ${process.version} · ${machine.redis} · load ${loadStart.map((x) => x.toFixed(2)).join('/')} → ${loadavg()
      .map((x) => x.toFixed(2))
      .join('/')} · ${durationS.toFixed(0)} s`,
  ].join('\n');
  const table = markdown({ figures, stats, storm, zipf, cold, hostile, writes, header, warnings });

  const result = {
    mode: opts.mode,
    date: new Date().toISOString(),
    command,
    durationS,
    machine: { ...machine, loadavgStart: loadStart, loadavgEnd: loadavg() },
    counts,
    figures,
    targets: Object.fromEntries(
      NAMED_FIGURES.map((n) => [
        n,
        { ...TARGETS[n], measured: figures[n] ?? null, met: figures[n] === undefined ? null : (meets(n, figures[n] as number) ?? null) },
      ]),
    ),
    details: { stats, ratios: latency?.ratios, clusterRatios: cluster?.ratios, storm, zipf, cold, hostile, writes },
    warnings,
  };
  const out = opts.out ? resolve(opts.out) : join(repoRoot, 'bench', 'results', 'latest.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  // The latency distributions side by side (BENCHMARKS.md shows the chart of a full run).
  const drawn = Object.fromEntries(
    CHARTED.filter(([op]) => stats[`${op}.c1`]?.quantilesUs?.length).map(([op, name]) => [
      name,
      stats[`${op}.c1`]?.quantilesUs as number[],
    ]),
  );
  if (Object.keys(drawn).length > 0) {
    const svg = out.replace(/\.json$/, '') + '-latency.svg';
    writeFileSync(svg, latencyDistributions('Latency at concurrency 1: a hit against raw Redis, a miss and DynamoDB Local', drawn));
    log(`chart written to ${svg}`);
  }
  process.stdout.write(`${table}\n`);
  log(`results written to ${out} (${durationS.toFixed(0)} s)`);
}

function machineInfo(): { nproc: number; cpu: string; memoryGiB: number; redis: string } {
  let cpu = 'unknown CPU';
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    /* not Linux */
  }
  let redis = 'redis-server ?';
  try {
    const v = execFileSync('redis-server', ['--version'], { encoding: 'utf8' });
    redis = `redis-server ${/v=(\S+)/.exec(v)?.[1] ?? v.trim()}`;
  } catch {
    /* reported by the stack start instead */
  }
  return { nproc: availableParallelism(), cpu, memoryGiB: totalmem() / 2 ** 30, redis };
}
