/**
 * Cluster mode's hit against a raw Redis Cluster HGET (issue 12): the ratios shards mode reports
 * (bench/latency.ts), on a local Redis Cluster of three primaries (no replicas) that this suite
 * starts and stops itself.
 *
 * The library runs in `CACHE_MODE=cluster` (one node per primary, each key routed by its slot); the
 * floor is an auto-pipelined ioredis `Cluster` client reading the same entries with `HGET key d`.
 * Both read entries the library cached (items loaded into the bench's DynamoDB table, then read once
 * through the library). Method as in bench/latency.ts: one warm-up thrown away, then `repeats`
 * times: concurrency 1 sampled side by side operation by operation (pairedRun), concurrency 64 in
 * alternating blocks (alternatingBlocks). A ratio figure is the median over repeats of that
 * repeat's ratio.
 */
import { Cluster } from 'ioredis';
import { RedisServer, type RedisCluster } from '../infra/local/redis-server.ts';
import { ItemCache } from '../lib/item-cache.ts';
import { exampleTables } from '../lib/tables.ts';
import { TABLE, loadItems, userAttributes, type BenchStack } from './setup.ts';
import { alternatingBlocks, median, medianStats, pairedRun, prng, shuffle, type Op, type RunStats } from './stats.ts';
import { HIGH } from './latency.ts';

export interface ClusterCounts {
  repeats: number;
  /** Items the hit measurements read (all cached before the run). */
  keys: number;
  /** Operations per run at c1 (each side) and c64 (each side, over the blocks). */
  hitC1: number;
  hitC64: number;
}

export interface ClusterResult {
  primaries: number;
  /** name → stats (medians over repeats): `cluster.raw.hget.c1`, `cluster.library.get-hit.c64`, … */
  stats: Record<string, RunStats>;
  /** Per-repeat ratios. */
  ratios: { hitVsRawP50: number[]; hitVsRawP99: number[]; throughputVsRaw: number[] };
  /** Operations whose answer was not what the measurement assumes (a "hit" served otherwise). */
  anomalies: Record<string, number>;
}

const PRIMARIES = 3;

export async function runClusterHit(stack: BenchStack, counts: ClusterCounts, log: (m: string) => void): Promise<ClusterResult> {
  const t0 = Date.now();
  const cluster = await RedisServer.startCluster(PRIMARIES);
  log(`cluster: ${PRIMARIES} primaries up in ${Date.now() - t0} ms (${cluster.primaries.map((s) => s.port).join(', ')})`);
  let cache: ItemCache | undefined;
  let raw: Cluster | undefined;
  try {
    cache = new ItemCache({
      config: stack.config({ CACHE_MODE: 'cluster', CACHE_NODES: cluster.urls[0] as string }),
      tables: exampleTables,
    });
    raw = new Cluster(cluster.nodes, { enableAutoPipelining: true });
    return await measure(stack, cache, raw, cluster, counts, log);
  } finally {
    raw?.disconnect();
    await cache?.close().catch(() => {});
    await cluster.stop();
  }
}

async function measure(
  stack: BenchStack,
  cache: ItemCache,
  raw: Cluster,
  cluster: RedisCluster,
  counts: ClusterCounts,
  log: (m: string) => void,
): Promise<ClusterResult> {
  const anomalies: Record<string, number> = {};
  const anomaly = (what: string): void => {
    anomalies[what] = (anomalies[what] ?? 0) + 1;
  };
  // Ids of their own: the latency suite's entries sit in the shards, not in this cluster.
  const ids = Array.from({ length: counts.keys }, (_, i) => `k${i}`);
  await loadItems(
    stack.dynamo,
    stack.physicalTable,
    ids.map((id, i) => userAttributes(id, i)),
  );
  await clusterReady(cache, cluster.primaries.length);
  for (let i = 0; i < ids.length; i += 100)
    await cache.batchGet(
      TABLE,
      ids.slice(i, i + 100).map((userId) => ({ userId })),
    );
  const keys = ids.map((userId) => ({ key: { userId }, redisKey: cache.resolve(TABLE, { userId }).redisKey }));
  const sources = await Promise.all(keys.map((k) => cache.get(TABLE, k.key).then((r) => r.cache)));
  const hits = sources.filter((s) => s === 'hit').length;
  if (hits !== keys.length) throw new Error(`cluster: only ${hits} of ${keys.length} keys hit after the warm-up`);
  log(`cluster: ${keys.length} users cached on ${cache.shards.nodes.length} nodes`);

  // A fixed random order over the keys, so consecutive operations land on different primaries.
  const order = shuffle(
    Array.from({ length: Math.max(counts.hitC64, counts.keys) }, (_, i) => i % counts.keys),
    prng(20240605),
  );
  const at = (i: number) => keys[order[i % order.length] as number] as (typeof keys)[number];
  const rawHit: Op = async (i) => {
    if ((await raw.hget(at(i).redisKey, 'd')) === null) anomaly('cluster raw: no entry');
  };
  const libHit: Op = async (i) => {
    const r = await cache.get(TABLE, at(i).key);
    if (r.cache !== 'hit') anomaly(`cluster library get-hit: ${r.cache}`);
  };
  const c1Ops = [
    { name: 'cluster.raw.hget.c1', op: rawHit },
    { name: 'cluster.library.get-hit.c1', op: libHit },
  ];
  const c64Ops = [
    { name: 'cluster.raw.hget.c64', op: rawHit },
    { name: 'cluster.library.get-hit.c64', op: libHit },
  ];
  // As bench/latency.ts: blocks per repeat, and a warm-up of a quarter of a run.
  const blocks = Math.max(2, Math.min(6, counts.repeats + 1));
  const t = Date.now();
  await pairedRun(Math.max(2, Math.ceil(counts.hitC1 / 4)), c1Ops);
  await alternatingBlocks(2, Math.max(2 * HIGH, Math.ceil(counts.hitC64 / 4)), HIGH, c64Ops);
  const runs: Record<string, RunStats[]> = {};
  for (let r = 0; r < counts.repeats; r++) {
    const once = {
      ...(await pairedRun(counts.hitC1, c1Ops)),
      ...(await alternatingBlocks(blocks, Math.ceil(counts.hitC64 / blocks), HIGH, c64Ops)),
    };
    for (const [name, st] of Object.entries(once)) (runs[name] ??= []).push(st);
  }
  log(`cluster: hit path c1 and c64 done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  for (const h of cache.health()) if (h.status !== 'up') anomaly(`cluster node ${h.address} ${h.status} after the hit path`);

  const stats: Record<string, RunStats> = {};
  for (const [name, list] of Object.entries(runs)) stats[name] = medianStats(list);
  const per = (a: string, b: string, f: (x: RunStats, y: RunStats) => number): number[] =>
    (runs[a] ?? []).map((x, i) => {
      const y = runs[b]?.[i];
      return y ? f(x, y) : Number.NaN;
    });
  const ratios = {
    hitVsRawP50: per('cluster.library.get-hit.c1', 'cluster.raw.hget.c1', (l, r) => l.p50Us / r.p50Us),
    hitVsRawP99: per('cluster.library.get-hit.c1', 'cluster.raw.hget.c1', (l, r) => l.p99Us / r.p99Us),
    throughputVsRaw: per('cluster.library.get-hit.c64', 'cluster.raw.hget.c64', (l, r) => l.opsPerSec / r.opsPerSec),
  };
  log(`cluster: hit p50 / raw p50 ${median(ratios.hitVsRawP50).toFixed(2)}, throughput / raw ${median(ratios.throughputVsRaw).toFixed(2)}`);
  return { primaries: cluster.primaries.length, stats, ratios, anomalies };
}

/** Waits until the library learnt every primary and each is connected, its epoch verified. */
async function clusterReady(cache: ItemCache, primaries: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const nodes = (): ItemCache['shards']['nodes'] => cache.shards.nodes;
  // A first read makes the library look at the topology, as a container's first request does.
  await cache.get(TABLE, { userId: 'k0' });
  while (!(nodes().length === primaries && nodes().every((n) => n.readable))) {
    if (Date.now() > deadline) throw new Error(`cluster: cache nodes not ready: ${JSON.stringify(cache.health())}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
