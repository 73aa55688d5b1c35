/**
 * The hit path alone, for profiling (`node --cpu-prof --import tsx bench/profile-hit.ts ...`) and
 * for taking it apart: one redis-server, entries written straight into it (no DynamoDB needed),
 * then `n` operations of one variant at concurrency `c`:
 *
 *   raw      a plain ioredis client (auto-pipelined), HGET key d            — the floor
 *   plain    an ioredis client with its defaults (no auto-pipelining), HGET key d
 *   client   the library's own node client (its options, its scripts), HGET key d
 *   read     the library's hit-path read (CacheNode.read: sent at once, socket corked per turn,
 *            bounded by the node's deadline queue), HGET key d
 *   readparse  read + JSON.parse of the entry
 *   parse    client + JSON.parse of the entry (what any caller of a raw client must at least do)
 *   decode   client + the library's decoding of the entry (decodeEntry)
 *   lib      ItemCache.get (key checks and derivation, node state, HGET, decoding)
 *
 * Entries are written as the library writes them (encodeEntry); `--form av` writes the
 * attribute-value form instead (what items with sets, binary or inexact numbers are kept as).
 *
 *   node --import tsx bench/profile-hit.ts [--variant lib] [--c 1] [--n 100000] [--repeats 5]
 *
 * Prints each variant's p50/p99 and throughput (medians over repeats), sampled like the bench: at
 * c1 operation by operation (pairedRun), above in alternating blocks.
 */
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    variant: { type: 'string', default: 'raw,client,parse,decode,lib' },
    form: { type: 'string', default: 'native' },
    c: { type: 'string', default: '1' },
    n: { type: 'string', default: '20000' },
    repeats: { type: 'string', default: '5' },
    keys: { type: 'string', default: '1000' },
  },
});
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { RedisServer } = await import('../infra/local/redis-server.ts');
const { ItemCache } = await import('../lib/item-cache.ts');
const { loadConfig } = await import('../lib/config.ts');
const { exampleTables } = await import('../lib/tables.ts');
const { encodeAttributes, encodeEntry, decodeEntry } = await import('../lib/codec.ts');
const { ENTRY_TAG_LENGTH } = await import('../lib/cache/scripts.ts');
const { userAttributes } = await import('./setup.ts');
const { timedRun, medianStats, pairedRun, alternatingBlocks } = await import('./stats.ts');
type RunStats = Awaited<ReturnType<typeof timedRun>>;

const server = await RedisServer.start();
const cache = new ItemCache({
  config: loadConfig({
    CACHE_NODES: server.url,
    DYNAMODB_ENDPOINT: 'http://127.0.0.1:9',
    TABLE_PREFIX: 'p-',
    CACHE_COMMAND_TIMEOUT_MS: '2000',
  }),
  tables: exampleTables,
});
const raw = server.client({ enableAutoPipelining: true });
const plain = server.client({});
const n = Number(values.n);
const c = Number(values.c);
const keyCount = Number(values.keys);
const ids = Array.from({ length: keyCount }, (_, i) => `h${i}`);
const rks = ids.map((userId) => cache.resolve('users', { userId }));
const node = cache.nodeFor(rks[0]!)!;
// After the node's epoch is sealed and the map registered: entries carry its tag (lib/cache/scripts.ts), as the library writes them.
await cache.shards.view?.refresh();
while (!node.readable) await new Promise((r) => setTimeout(r, 10));
const encode = values.form === 'av' ? encodeAttributes : (av: Parameters<typeof encodeAttributes>[0]) => encodeEntry(av, '_version');
for (const [i, rk] of rks.entries()) {
  await raw.hset(rk.redisKey, 'd', node.epochTag + encode(userAttributes(rk.key.userId as string, i)), 'v', '1');
}

const variants: Record<string, (i: number) => Promise<unknown>> = {
  raw: (i) => raw.hget(rks[i % keyCount]!.redisKey, 'd'),
  plain: (i) => plain.hget(rks[i % keyCount]!.redisKey, 'd'),
  client: (i) => node.client.hget(rks[i % keyCount]!.redisKey, 'd'),
  read: (i) => node.read(rks[i % keyCount]!.redisKey, 'd', Date.now() + 2000),
  readparse: async (i) => JSON.parse((await node.read(rks[i % keyCount]!.redisKey, 'd', Date.now() + 2000))!.slice(ENTRY_TAG_LENGTH)),
  parse: async (i) => JSON.parse((await node.client.hget(rks[i % keyCount]!.redisKey, 'd'))!.slice(ENTRY_TAG_LENGTH)),
  decode: async (i) => decodeEntry((await node.client.hget(rks[i % keyCount]!.redisKey, 'd'))!.slice(ENTRY_TAG_LENGTH), '_version'),
  lib: async (i) => {
    const r = await cache.get('users', { userId: ids[i % keyCount] });
    if (r.cache !== 'hit') throw new Error(`not a hit: ${r.cache}`);
  },
};
const chosen = values.variant!.split(',');
const runs: Record<string, RunStats[]> = {};
const ops = chosen.map((name) => ({ name, op: variants[name]! }));
const once = (count: number) => (c === 1 ? pairedRun(count, ops) : alternatingBlocks(4, Math.ceil(count / 4), c, ops));
await once(Math.ceil(n / 4));
for (let r = 0; r < Number(values.repeats); r++) {
  for (const [v, st] of Object.entries(await once(n))) (runs[v] ??= []).push(st);
}
for (const v of chosen) {
  const s = medianStats(runs[v]!);
  console.log(
    `${v.padEnd(8)} c${c}: p50 ${s.p50Us.toFixed(1)} µs  p99 ${s.p99Us.toFixed(1)} µs  mean ${s.meanUs.toFixed(1)} µs  ${Math.round(s.opsPerSec)} ops/s`,
  );
}
await cache.close();
raw.disconnect();
plain.disconnect();
await server.stop();
process.exit(0);
