/**
 * Test runner entry:  node --import tsx test/run.ts [file filters...]
 *
 * Starts DynamoDB Local once, exports DYNAMODB_ENDPOINT to the test processes, runs
 * every test/**\/*.test.ts (or only those whose path contains one of the filters)
 * with `node --test --test-concurrency=1`, stops DynamoDB Local and exits with the
 * test run's exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDynamoDbLocal, type DynamoDbLocal } from './helpers/dynamodb-local.ts';

// The AWS SDK prints a multi-line "will require node >=22" notice in every test
// process on Node 20; it is informational only, so keep test output readable.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const repoRoot = dirname(dirname(fileURLToPath(import.meta.url)));
process.chdir(repoRoot);

function findTestFiles(filters: string[]): string[] {
  const testDir = join(repoRoot, 'test');
  const all = readdirSync(testDir, { recursive: true, encoding: 'utf8' })
    .filter((p) => p.endsWith('.test.ts') && !p.split(sep).includes('node_modules'))
    .map((p) => relative(repoRoot, join(testDir, p)).split(sep).join('/'))
    .sort();
  if (filters.length === 0) return all;
  return all.filter((f) => filters.some((needle) => f.includes(needle)));
}

function signalExitCode(sig: NodeJS.Signals): number {
  return 128 + (constants.signals[sig] ?? 1);
}

async function main(): Promise<void> {
  const filters = process.argv.slice(2);
  const files = findTestFiles(filters);
  if (files.length === 0) {
    console.error(`No test files found${filters.length ? ` matching ${filters.join(', ')}` : ''}.`);
    process.exit(1);
  }

  let dynamo: DynamoDbLocal | undefined;
  let child: ChildProcess | undefined;
  let receivedSignal: NodeJS.Signals | undefined;

  const onSignal = (sig: NodeJS.Signals): void => {
    if (receivedSignal) {
      // Second signal: stop being polite.
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return;
    }
    receivedSignal = sig;
    console.error(`\ntest/run.ts: received ${sig}, stopping…`);
    if (child) {
      // Forward to the test process; main() stops DynamoDB Local once it has exited.
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      return;
    }
    // Still starting DynamoDB Local: exiting runs dynamodb-local.ts's exit hook, which
    // SIGKILLs the JVM even though startDynamoDbLocal() has not resolved yet.
    void (dynamo?.stop() ?? Promise.resolve()).finally(() => process.exit(signalExitCode(sig)));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const t0 = Date.now();
  dynamo = await startDynamoDbLocal();
  console.log(`DynamoDB Local: ${dynamo.endpoint} (pid ${dynamo.pid}, up in ${Date.now() - t0} ms)`);
  if (receivedSignal) {
    await dynamo.stop();
    process.exit(signalExitCode(receivedSignal));
  }

  const args = ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files];
  child = spawn(process.execPath, args, {
    stdio: 'inherit',
    env: { ...process.env, DYNAMODB_ENDPOINT: dynamo.endpoint },
  });

  const exitCode = await new Promise<number>((resolve) => {
    child!.once('error', (err) => {
      console.error(`test/run.ts: failed to start the test process: ${err.message}`);
      resolve(1);
    });
    child!.once('exit', (code, sig) => {
      resolve(code ?? (sig ? signalExitCode(sig) : 1));
    });
  });

  await dynamo.stop();
  process.exit(receivedSignal ? signalExitCode(receivedSignal) : exitCode);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
