/**
 * `node --import tsx bench/cluster-hit.ts [--keys N] [--iterations N] [--dynamodb-endpoint URL]`
 *
 * Cluster mode's hit path against a raw Redis Cluster HGET (issue 12): a local cluster of three
 * primaries, the library in `CACHE_MODE=cluster` (one node per primary, routed by slot) against an
 * auto-pipelined ioredis `Cluster` client reading the same entries. Prints the ratios shards mode
 * reports (BENCHMARKS.md): hit p50 / raw p50 at concurrency 1 (sampled side by side) and hit
 * throughput / raw throughput at concurrency 64 (alternating blocks).
 */
import { parseArgs } from 'node:util';

process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '500' },
    iterations: { type: 'string', default: '5000' },
    'dynamodb-endpoint': { type: 'string' },
  },
  strict: true,
});

const { randomBytes } = await import('node:crypto');
const { Cluster } = await import('ioredis');
const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
const { startDynamoDbLocal, localDynamoClientConfig } = await import('../infra/local/dynamodb-local.ts');
const { createTables } = await import('../infra/local/create-tables.ts');
const { RedisServer } = await import('../infra/local/redis-server.ts');
const { freePort } = await import('../infra/local/ports.ts');
const { loadConfig } = await import('../lib/config.ts');
const { ItemCache } = await import('../lib/item-cache.ts');
const { exampleTables } = await import('../lib/tables.ts');
const { pairedRun, alternatingBlocks } = await import('./stats.ts');
const { userItem } = await import('./setup.ts');

const log = (m: string): void => void process.stderr.write(`${m}\n`);
const keyCount = Number(values.keys);
const iterations = Number(values.iterations);

const local = values['dynamodb-endpoint'] ? undefined : await startDynamoDbLocal(await freePort());
const endpoint = values['dynamodb-endpoint'] ?? (local as { endpoint: string }).endpoint;
const cluster = await RedisServer.startCluster(3);
const prefix = `bench${randomBytes(3).toString('hex')}-`;
const dynamo = new DynamoDBClient({ ...localDynamoClientConfig(endpoint), maxAttempts: 3 });
await createTables(dynamo, exampleTables, prefix);
const cache = new ItemCache({
  config: loadConfig({
    CACHE_MODE: 'cluster',
    CACHE_NODES: cluster.urls[0] as string,
    DYNAMODB_ENDPOINT: endpoint,
    TABLE_PREFIX: prefix,
    AWS_REGION: 'us-east-1',
    // As bench/setup.ts: a starved 64-way run must not mark a node down (the timeout's value costs the hit path nothing).
    CACHE_COMMAND_TIMEOUT_MS: '2000',
  }),
  tables: exampleTables,
});
const raw = new Cluster(cluster.nodes, { enableAutoPipelining: true });
try {
  const ids = Array.from({ length: keyCount }, (_, i) => `u${i}`);
  for (const [i, userId] of ids.entries()) await cache.put('users', userItem(userId, i));
  for (let i = 0; i < 200 && !(cache.shards.nodes.length === 3 && cache.shards.nodes.every((n) => n.readable)); i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  for (const userId of ids) await cache.get('users', { userId });
  const rks = ids.map((userId) => cache.resolve('users', { userId }));
  const sources = await Promise.all(ids.map((userId) => cache.get('users', { userId }).then((r) => r.cache)));
  const hits = sources.filter((s) => s === 'hit').length;
  if (hits !== keyCount) throw new Error(`only ${hits} of ${keyCount} keys hit after the warm-up`);
  log(`cluster of 3 primaries, ${keyCount} users cached, ${cache.shards.nodes.length} nodes`);
  const libraryHit = (i: number): Promise<unknown> => cache.get('users', { userId: ids[i % keyCount] as string });
  const rawHget = (i: number): Promise<unknown> => raw.hget((rks[i % keyCount] as { redisKey: string }).redisKey, 'd');
  const c1 = await pairedRun(iterations, [
    { name: 'library', op: libraryHit },
    { name: 'raw', op: rawHget },
  ]);
  const c64 = await alternatingBlocks(6, Math.max(1000, iterations), 64, [
    { name: 'library', op: libraryHit },
    { name: 'raw', op: rawHget },
  ]);
  const lib1 = c1.library!;
  const raw1 = c1.raw!;
  const lib64 = c64.library!;
  const raw64 = c64.raw!;
  const us = (v: number): string => `${Math.round(v)} µs`;
  console.log('| figure | library (cluster mode) | raw Cluster HGET | ratio |');
  console.log('|---|---|---|---|');
  console.log(`| hit p50, c1 | ${us(lib1.p50Us)} | ${us(raw1.p50Us)} | ${(lib1.p50Us / raw1.p50Us).toFixed(2)} |`);
  console.log(`| hit p99, c1 | ${us(lib1.p99Us)} | ${us(raw1.p99Us)} | ${(lib1.p99Us / raw1.p99Us).toFixed(2)} |`);
  console.log(
    `| throughput, c64 | ${Math.round(lib64.opsPerSec)}/s | ${Math.round(raw64.opsPerSec)}/s | ${(lib64.opsPerSec / raw64.opsPerSec).toFixed(2)} |`,
  );
} finally {
  raw.disconnect();
  await cache.close();
  dynamo.destroy();
  await cluster.stop();
  await local?.stop();
}
