/**
 * `npm start`: the whole stack on this machine, on embedded defaults.
 *   DynamoDB Local (in memory)        DYNAMODB_PORT (8000), or an existing DYNAMODB_ENDPOINT
 *   one redis-server per port          REDIS_PORTS (6380,6381,6382); REDIS_TLS=1 for TLS + AUTH
 *   the tables, from tables.json       prefix dynamo-redis-cache-<STAGE>- (STAGE: local), and the
 *     parking table (infra/parking.yml)
 *   the HTTP API from serverless.yml   PORT (3000), served by serverless-offline; LAMBDA_PORT (3002)
 *   the Streams consumer               fed from DynamoDB Local's streams as Lambda would, the
 *     replayer of the invalidations it parks and the sweep of what stays parked (separate instances)
 * CACHE_* variables pass through to the handlers. Ctrl-C (SIGINT/SIGTERM) stops all of it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { exampleTables } from '../../lib/tables.ts';
import { createParkingTable, createTables } from './create-tables.ts';
import { localDynamoClientConfig, startDynamoDbLocal, type DynamoDbLocal } from './dynamodb-local.ts';
import { RedisServer } from './redis-server.ts';
import { StreamFeed } from './stream-feed.ts';
import streamMappings from '../stream-mappings.cjs';
import { generateTlsMaterial, redisTlsArgs, type TlsMaterial } from './tls.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const env = process.env;

function port(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${name}: expected a port number, got '${raw}'`);
  return n;
}

const settings = {
  dynamoPort: port('DYNAMODB_PORT', 8000),
  redisPorts: (env.REDIS_PORTS ?? '6380,6381,6382').split(',').map((p, i) => {
    const n = Number(p.trim());
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`REDIS_PORTS: entry ${i + 1} is not a port: '${p}'`);
    if (n === 6379) throw new Error('REDIS_PORTS: 6379 is left to the machine’s own Redis');
    return n;
  }),
  httpPort: port('PORT', 3000),
  lambdaPort: port('LAMBDA_PORT', 3002),
  stage: env.STAGE ?? 'local',
  tls: env.REDIS_TLS === '1' || env.REDIS_TLS === 'true',
};
const prefix = `dynamo-redis-cache-${settings.stage}-`;

const children: ChildProcess[] = [];
let offline: ChildProcess | undefined;
let dynamo: DynamoDbLocal | undefined;
let feed: StreamFeed | undefined;
/** The sweep's schedule in serverless.yml: rate(1 minute). */
const SWEEP_EVERY_MS = 60_000;
let tlsMaterial: TlsMaterial | undefined;
const redisServers: RedisServer[] = [];
let stopping = false;

function say(line: string): void {
  process.stdout.write(`[local] ${line}\n`);
}

async function main(): Promise<void> {
  // DynamoDB Local, or the one named by DYNAMODB_ENDPOINT
  let endpoint = env.DYNAMODB_ENDPOINT;
  if (!endpoint) {
    dynamo = await startDynamoDbLocal(settings.dynamoPort);
    endpoint = dynamo.endpoint;
  }
  say(`DynamoDB Local     ${endpoint}`);

  // Redis shards
  const token = settings.tls ? randomBytes(24).toString('hex') : undefined;
  if (settings.tls) tlsMaterial = generateTlsMaterial();
  // The launcher the tests use (infra/local/redis-server.ts): each server empty, its first epoch sealed.
  // With TLS the given port is the TLS one (and a free plain one, on 127.0.0.1 with AUTH, serves the
  // launcher's own probes).
  const tls = tlsMaterial;
  redisServers.push(
    ...(await Promise.all(
      settings.redisPorts.map((p) =>
        RedisServer.start(tls ? { password: token, extraArgs: redisTlsArgs(tls, p) } : { port: p, password: token }),
      ),
    )),
  );
  const scheme = settings.tls ? 'rediss' : 'redis';
  const cacheNodes = settings.redisPorts.map((p) => `${scheme}://127.0.0.1:${p}`).join(',');
  say(`Redis shards       ${cacheNodes}${settings.tls ? ' (TLS, AUTH)' : ''}`);

  // Tables
  const client = new DynamoDBClient(localDynamoClientConfig(endpoint));
  await createTables(client, exampleTables, prefix);
  const parkingTable = await createParkingTable(client, prefix);
  client.destroy();
  say(`Tables             ${exampleTables.map((t) => prefix + t.name).join(', ')}, ${parkingTable} (parked invalidations)`);

  // The largest entry TTL, as the deploy's params give it: CACHE_TTL_SECONDS or a table's own.
  const largestTtlSeconds = Math.max(Number(env.CACHE_TTL_SECONDS || 3600), ...exampleTables.map((t) => t.ttlSeconds ?? 0));
  // What the handlers see (serverless.yml's params win over the environment for the ones it sets).
  const handlerEnv: Record<string, string> = {
    AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID ?? 'local',
    AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY ?? 'local',
    AWS_REGION: env.AWS_REGION ?? 'us-east-1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    CACHE_NODES: cacheNodes,
    DYNAMODB_ENDPOINT: endpoint,
    // DynamoDB Local (a JVM, often cold, on a small machine) answers far slower than DynamoDB does: a
    // per-attempt timeout meant for DynamoDB would make the SDK retry writes it already applied.
    DYNAMODB_TIMEOUT_MS: env.DYNAMODB_TIMEOUT_MS ?? '3000',
    DYNAMODB_DEADLINE_MS: env.DYNAMODB_DEADLINE_MS ?? '6000',
    TABLE_PREFIX: prefix,
    STREAM_PARKING_TABLE: parkingTable,
    // What the deploy gives the stream functions: the mappings' record-age cut-off (serverless.yml).
    STREAM_RETRY_WINDOW_SECONDS: String(streamMappings.retryWindowSeconds(largestTtlSeconds)),
    ...(token ? { CACHE_AUTH_TOKEN: token } : {}),
    ...(tlsMaterial ? { CACHE_TLS_CA_FILE: tlsMaterial.caFile } : {}),
    // Without TLS the shards have no password, but under a STAGE other than local (no params.local)
    // serverless.yml still hands the handlers a CACHE_AUTH_TOKEN (its deploy-time Secrets Manager
    // reference), which the library refuses over plain redis://. Everything here is on 127.0.0.1.
    ...(settings.tls ? {} : { CACHE_ALLOW_PLAIN_AUTH: '1' }),
  };
  // Whatever the stage, the local stack has no VPC and no auth (serverless.yml's params.local, spelled out).
  const params = [
    '--param=vpcId=vpc-local',
    '--param=subnetIds=subnet-local',
    '--param=httpAuth=none',
    `--param=cacheNodes=${cacheNodes}`,
    `--param=dynamodbEndpoint=${endpoint}`,
    // No Secrets Manager here: the handlers get the token itself, if any.
    '--param=secretArnsOf=local',
    ...(token ? [`--param=cacheAuthToken=${token}`] : []),
    ...(env.CACHE_TTL_SECONDS ? [`--param=cacheTtlSeconds=${env.CACHE_TTL_SECONDS}`] : []),
  ];

  // The HTTP API
  offline = spawn(
    process.execPath,
    [
      join(root, 'node_modules', 'osls', 'bin', 'serverless.js'),
      'offline',
      'start',
      '--stage',
      settings.stage,
      ...params,
      '--host',
      '127.0.0.1',
      '--httpPort',
      String(settings.httpPort),
      '--lambdaPort',
      String(settings.lambdaPort),
      '--noPrependStageInUrl',
      '--noAuth',
      // Keep handler modules warm between invocations, as Lambda keeps a container.
      '--terminateIdleLambdaTime',
      '86400',
      '--localEnvironment',
    ],
    { cwd: root, env: { ...env, ...handlerEnv, SLS_TELEMETRY_DISABLED: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  const server = offline;
  children.push(server);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (/Server ready/i.test(out)) resolve();
    };
    server.stdout?.on('data', onData);
    server.stderr?.on('data', onData);
    server.once('exit', (code) => reject(new Error(`serverless offline exited (${code}):\n${out.slice(-4000)}`)));
  });
  server.stdout?.pipe(process.stdout);
  server.stderr?.pipe(process.stderr);
  say(`HTTP API           http://127.0.0.1:${settings.httpPort}  (GET /health, /tables/{table}/items/…)`);

  // The Streams consumer, the replayer and the sweep, each with its own ItemCache (its own node
  // state and dirty keys), as separate Lambda containers have; fed as the deploy's event source
  // mappings feed them (infra/stream-mappings.cjs, read by the feed), the sweep on the deploy's schedule.
  Object.assign(process.env, handlerEnv);
  const { createStreamHandler } = await import('../../functions/stream.ts');
  const { createReplayHandler } = await import('../../functions/replay.ts');
  const { createSweepHandler } = await import('../../functions/sweep.ts');
  const { ItemCache } = await import('../../lib/item-cache.ts');
  feed = new StreamFeed({
    client: localDynamoClientConfig(endpoint),
    tables: exampleTables.map((t) => prefix + t.name),
    handler: createStreamHandler(new ItemCache()),
    subscriptions: [{ table: parkingTable, handler: createReplayHandler(new ItemCache()) }],
    schedules: [{ everyMs: SWEEP_EVERY_MS, handler: createSweepHandler(new ItemCache()) }],
    largestTtlSeconds,
    log: (m) => say(m),
  });
  await feed.start();
  say(
    `Streams consumer   every table’s stream from ${feed.mapping.startingPosition}, records kept ${feed.mapping.maximumRecordAgeInSeconds} s; ` +
      'the replayer the parking table’s; the sweep every minute',
  );
  say('ready — Ctrl-C stops everything');
}

async function stop(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  say('stopping…');
  await feed?.stop().catch(() => {});
  const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
  // serverless offline runs in its own process group (its workers with it) and stops on SIGINT.
  const signal = (c: ChildProcess, sig: NodeJS.Signals): void => {
    try {
      if (c === offline && c.pid) process.kill(-c.pid, sig);
      else c.kill(sig);
    } catch {
      /* already gone */
    }
  };
  for (const c of children) if (alive(c)) signal(c, c === offline ? 'SIGINT' : 'SIGTERM');
  const killer = setTimeout(() => {
    for (const c of children) if (alive(c)) signal(c, 'SIGKILL');
  }, 5000);
  await Promise.all(children.map((c) => (alive(c) ? new Promise((r) => c.once('exit', r)) : undefined)));
  clearTimeout(killer);
  await Promise.all(redisServers.map((r) => r.stop()));
  await dynamo?.stop();
  if (tlsMaterial) rmSync(tlsMaterial.dir, { recursive: true, force: true });
  process.exit(code);
}

process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
main().catch((err: unknown) => {
  process.stderr.write(`[local] failed: ${err instanceof Error ? err.message : String(err)}\n`);
  void stop(1);
});
