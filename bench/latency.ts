/**
 * Floor, Library, Handler and DynamoDB figures: latency (p50/p99) and throughput of each operation
 * at concurrency 1 and 64, on the same items.
 *
 * Method: every group of measurements first runs once as a warm-up (JIT, connections, scripts
 * loaded) that is thrown away, then `repeats` times. The machine is shared and its speed changes
 * from one second to the next, so what is compared is sampled side by side:
 *  - at concurrency 1 operation by operation (pairedRun: raw HGET, library get, raw HGET + parse,
 *    handler, and every n-th iteration a DynamoDB GetItem, each timed alone, in rotating order);
 *    GetItem against library hits also in alternating closed loops (see dynamoVsHitOps);
 *  - at concurrency 64 in short alternating blocks (alternatingBlocks: raw, library, library, raw…),
 *    throughput = operations / time over the blocks.
 * A ratio figure is the median over repeats of that repeat's ratio; an absolute figure is the
 * median over repeats. Operations that go to DynamoDB (miss, put, update, delete) are closed loops
 * of a fixed count (timedRun), untimed set-up before each (e.g. dropping the entries a miss run
 * must miss).
 */
import { BatchGetItemCommand, GetItemCommand, type BatchGetItemCommandOutput } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { ENTRY_TAG_LENGTH } from '../lib/cache/scripts.ts';
import type { ItemCache } from '../lib/item-cache.ts';
import { TABLE, loadItems, ready, userAttributes, userItem, type Attributes, type BenchStack } from './setup.ts';
import { alternatingBlocks, medianStats, pairedRun, prng, shuffle, timedRun, type Op, type PairedOp, type RunStats } from './stats.ts';

export interface LatencyCounts {
  repeats: number;
  /** Items the hit-path measurements read (all cached before the run). */
  hitKeys: number;
  /** Operations per run: hit path (raw, library, handler) at c1 and c64. */
  hitC1: number;
  hitC64: number;
  /** Operations per run that reach DynamoDB (miss, put, update, delete, GetItem) at c1 and c64. */
  dynC1: number;
  dynC64: number;
  /** 100-key batches per run at c1 and c64. */
  batchC1: number;
  batchC64: number;
}

export const HIGH = 64;

type HttpHandler = (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;

export interface LatencyResult {
  /** name → stats (medians over repeats), e.g. `library.get-hit.c1`. */
  stats: Record<string, RunStats>;
  /** Per-repeat ratios and their medians. */
  ratios: {
    hitVsRawP50: number[];
    hitVsRawP99: number[];
    throughputVsRaw: number[];
    hitVsRawParsedP50: number[];
    throughputVsRawParsed: number[];
    throughputVsRawDefaults: number[];
    throughputVsOwnRead: number[];
    hitSpeedupVsDynamo: number[];
    hitSpeedupVsDynamoInterleaved: number[];
    handlerVsLibraryP50: number[];
    batchSpeedupVsDynamo: number[];
  };
  /** Operations whose answer was not what the measurement assumes (e.g. a "hit" served as a miss). */
  anomalies: Record<string, number>;
  handlerNote: string | undefined;
}

interface Measurement {
  name: string;
  concurrency: number;
  ops: number;
  /** Untimed, before every run (warm-up included): e.g. drop the entries a miss run must miss. */
  prepare?: () => Promise<void>;
  op: Op;
}

export async function runLatency(
  stack: BenchStack,
  counts: LatencyCounts,
  log: (m: string) => void,
  only: (name: string) => boolean,
): Promise<LatencyResult> {
  const anomalies: Record<string, number> = {};
  const anomaly = (what: string): void => {
    anomalies[what] = (anomalies[what] ?? 0) + 1;
  };
  const random = prng(20240605);
  const cache = stack.cache();
  await ready(cache);
  const table = stack.physicalTable;

  // --- the data --------------------------------------------------------------------------------
  const hitIds = Array.from({ length: counts.hitKeys }, (_, i) => `h${i}`);
  const missIds = Array.from({ length: Math.max(counts.dynC1, counts.dynC64) }, (_, i) => `m${i}`);
  const deleteIds = Array.from({ length: Math.max(counts.dynC1, counts.dynC64) }, (_, i) => `x${i}`);
  const writerIds = (p: string): string[][] => Array.from({ length: HIGH }, (_, w) => [0, 1, 2, 3].map((j) => `${p}${w}_${j}`));
  const putIds = writerIds('p');
  const updateIds = writerIds('q');
  const all = [...hitIds, ...missIds, ...putIds.flat(), ...updateIds.flat()];
  const t0 = Date.now();
  await loadItems(
    stack.dynamo,
    table,
    all.map((id, i) => userAttributes(id, i)),
  );
  log(`latency: ${all.length} items loaded in ${Date.now() - t0} ms`);

  const hit = hitIds.map((userId) => {
    const rk = cache.resolve(TABLE, { userId });
    const node = cache.nodeFor(rk);
    if (node === undefined) throw new Error('cache is off');
    return {
      userId,
      key: { userId },
      redisKey: rk.redisKey,
      node: Number(node.id),
      cacheNode: node,
      dynamoKey: { userId: { S: userId } } as Attributes,
    };
  });
  const missKeys = missIds.map((userId) => ({
    key: { userId },
    redisKey: cache.resolve(TABLE, { userId }).redisKey,
    node: Number(cache.nodeFor(cache.resolve(TABLE, { userId }))?.id),
  }));
  // A fixed random order over the hit keys, so consecutive operations land on different shards.
  const order = shuffle(
    Array.from({ length: Math.max(counts.hitC64, counts.hitKeys) }, (_, i) => i % counts.hitKeys),
    random,
  );
  const hitAt = (i: number) => hit[order[i % order.length] as number] as (typeof hit)[number];
  const batches = Array.from({ length: 50 }, () => shuffle([...hit], random).slice(0, Math.min(100, hit.length)));

  // Every hit key cached (through the library, as a reader would).
  for (let i = 0; i < hit.length; i += 100)
    await cache.batchGet(
      TABLE,
      hit.slice(i, i + 100).map((h) => h.key),
    );
  for (const ids of [putIds.flat(), updateIds.flat()]) {
    for (let i = 0; i < ids.length; i += 100)
      await cache.batchGet(
        TABLE,
        ids.slice(i, i + 100).map((userId) => ({ userId })),
      );
  }

  // --- the handler, built the way Lambda builds it: from the environment, at module scope -------
  let handler: HttpHandler | undefined;
  let handlerNote: string | undefined;
  if (only('handler')) {
    Object.assign(process.env, stack.env);
    try {
      const mod = (await import('../functions/http/read.ts')) as { handler?: HttpHandler };
      handler = mod.handler;
      if (typeof handler !== 'function') handlerNote = 'functions/http/read.ts exports no handler function';
    } catch (err) {
      handlerNote = `functions/http/read.ts could not be imported: ${err instanceof Error ? err.message : String(err)}`;
      handler = undefined;
    }
    if (handlerNote) log(`handler: ${handlerNote}`);
  }
  const events = hit.map((h, i) => getEvent(`/tables/${TABLE}/items/${encodeURIComponent(h.userId)}`, i));

  // --- the operations -------------------------------------------------------------------------
  const rawHit: Op = async (i) => {
    const h = hitAt(i);
    const d = await (stack.raw[h.node] as (typeof stack.raw)[number]).hget(h.redisKey, 'd');
    if (d === null) anomaly('raw: no entry');
  };
  // What any caller of a raw client must at least do with the entry: parse it (no reviver, no checks).
  const rawHitParsed: Op = async (i) => {
    const h = hitAt(i);
    const d = await (stack.raw[h.node] as (typeof stack.raw)[number]).hget(h.redisKey, 'd');
    if (d === null) anomaly('raw: no entry');
    else JSON.parse(d.slice(ENTRY_TAG_LENGTH)); // past the tag: epoch, then map (lib/cache/scripts.ts)
  };
  // Supplementary floors at c64: an ioredis client with its defaults (each command written at once,
  // no auto-pipelining), and the library's own hit-path read alone (CacheNode.read: no decoding,
  // no protocol), which sends faster than either plain client.
  const rawDefaultsHit: Op = async (i) => {
    const h = hitAt(i);
    const d = await (stack.rawDefaults[h.node] as (typeof stack.rawDefaults)[number]).hget(h.redisKey, 'd');
    if (d === null) anomaly('raw defaults: no entry');
  };
  const libRead: Op = async (i) => {
    const h = hitAt(i);
    const d = await h.cacheNode.read(h.redisKey, 'd', Date.now() + 2000);
    if (d === null) anomaly('library read: no entry');
  };
  const libHit: Op = async (i) => {
    const r = await cache.get(TABLE, hitAt(i).key);
    if (r.cache !== 'hit') anomaly(`library get-hit: ${r.cache}`);
  };
  const handlerHit: Op = async (i) => {
    const n = order[i % order.length] as number;
    const res = await (handler as HttpHandler)(events[n] as APIGatewayProxyEventV2);
    if (res.statusCode !== 200 || res.headers?.['x-cache'] !== 'hit')
      anomaly(`handler: ${res.statusCode} ${String(res.headers?.['x-cache'])}`);
  };
  const dynamoGet: Op = async (i) => {
    const out = await stack.dynamo.send(new GetItemCommand({ TableName: table, Key: hitAt(i).dynamoKey, ConsistentRead: true }));
    if (out.Item === undefined) anomaly('dynamo GetItem: not found');
  };
  const dynamoBatch: Op = async (i) => {
    const batch = batches[i % batches.length] as typeof hit;
    let keys: Attributes[] | undefined = batch.map((h) => h.dynamoKey);
    let found = 0;
    while (keys && keys.length > 0) {
      const out: BatchGetItemCommandOutput = await stack.dynamo.send(
        new BatchGetItemCommand({ RequestItems: { [table]: { Keys: keys, ConsistentRead: true } } }),
      );
      found += out.Responses?.[table]?.length ?? 0;
      keys = out.UnprocessedKeys?.[table]?.Keys;
    }
    if (found !== batch.length) anomaly('dynamo BatchGetItem: items missing');
  };
  const libBatch: Op = async (i) => {
    const r = await cache.batchGet(
      TABLE,
      (batches[i % batches.length] as typeof hit).map((h) => h.key),
    );
    if (r.sources.some((s) => s !== 'hit')) anomaly('library batch-get: not all hits');
  };
  const libMiss: Op = async (i) => {
    const r = await cache.get(TABLE, (missKeys[i] as (typeof missKeys)[number]).key);
    if (r.cache !== 'miss') anomaly(`library get-miss: ${r.cache}`);
  };
  const dropMissEntries = async (): Promise<void> => {
    await Promise.all(missKeys.map((m) => (stack.raw[m.node] as (typeof stack.raw)[number]).del(m.redisKey)));
  };
  const libPut: Op = async (i, w) => {
    const userId = (putIds[w] as string[])[i % 4] as string;
    await cache.put(TABLE, userItem(userId, i));
  };
  const libUpdate: Op = async (i, w) => {
    const userId = (updateIds[w] as string[])[i % 4] as string;
    await cache.update(TABLE, { userId }, { set: { score: i, plan: 'pro' } });
  };
  const deleteKeys = deleteIds.map((userId) => {
    const rk = cache.resolve(TABLE, { userId });
    return { redisKey: rk.redisKey, node: Number(cache.nodeFor(rk)?.id) };
  });
  const reloadDeleted = async (): Promise<void> => {
    // Out of band, so drop their entries too (the stream consumer's job in production).
    await loadItems(
      stack.dynamo,
      table,
      deleteIds.map((id, i) => userAttributes(id, i)),
    );
    await Promise.all(deleteKeys.map((k) => (stack.raw[k.node] as (typeof stack.raw)[number]).del(k.redisKey)));
  };
  const libDelete: Op = async (i) => {
    const r = await cache.delete(TABLE, { userId: deleteIds[i] as string });
    if (!r.deleted) anomaly('library delete: nothing to delete');
  };

  // --- the measurements ----------------------------------------------------------------------
  const blocks = Math.max(2, Math.min(6, counts.repeats + 1));
  const dynEvery = Math.max(1, Math.round(counts.hitC1 / counts.dynC1));
  const hitC1Ops: PairedOp[] = [
    { name: 'raw.hget.c1', op: rawHit },
    { name: 'library.get-hit.c1', op: libHit },
    { name: 'raw.hget-parse.c1', op: rawHitParsed },
    ...(handler ? [{ name: 'handler.get-hit.c1', op: handlerHit }] : []),
    { name: 'dynamo.getitem.c1.interleaved', op: dynamoGet, every: dynEvery },
  ];
  // DynamoDB Local answers a lone request, spread between hits as above, about twice as slowly as
  // one in a tight loop (its threads park between requests), so the GetItem figure is taken from
  // closed loops of its own, alternating with closed loops of library hits: the less flattering
  // ratio. The interleaved one is kept as a supplementary figure.
  const dynamoVsHitOps = [
    { name: 'library.get-hit.c1.loop', op: libHit },
    { name: 'dynamo.getitem.c1', op: dynamoGet },
  ];
  const hitC64Ops = [
    { name: 'raw.hget.c64', op: rawHit },
    { name: 'library.get-hit.c64', op: libHit },
    { name: 'raw.hget-parse.c64', op: rawHitParsed },
    { name: 'raw.hget-defaults.c64', op: rawDefaultsHit },
    { name: 'library.read.c64', op: libRead },
  ];
  const batchC1Ops: PairedOp[] = [
    { name: 'library.batch-get-100.c1', op: libBatch },
    { name: 'dynamo.batchgetitem-100.c1', op: dynamoBatch },
  ];
  const batchC64Ops = [
    { name: 'library.batch-get-100.c64', op: libBatch },
    { name: 'dynamo.batchgetitem-100.c64', op: dynamoBatch },
  ];
  const m = (name: string, concurrency: number, ops: number, op: Op, prepare?: () => Promise<void>): Measurement => ({
    name,
    concurrency,
    ops,
    op,
    prepare,
  });
  const dynamoBound: Measurement[] = [
    m('library.get-miss.c1', 1, counts.dynC1, libMiss, dropMissEntries),
    m('library.get-miss.c64', HIGH, counts.dynC64, libMiss, dropMissEntries),
    m('library.put.c1', 1, counts.dynC1, libPut),
    m('library.put.c64', HIGH, counts.dynC64, libPut),
    m('library.update.c1', 1, counts.dynC1, libUpdate),
    m('library.update.c64', HIGH, counts.dynC64, libUpdate),
    m('library.delete.c1', 1, counts.dynC1, libDelete, reloadDeleted),
    m('library.delete.c64', HIGH, counts.dynC64, libDelete, reloadDeleted),
    m('dynamo.getitem.c64', HIGH, counts.dynC64, dynamoGet),
  ];
  const runOne = async (x: Measurement, ops = x.ops): Promise<RunStats> => {
    await x.prepare?.();
    return timedRun(ops, x.concurrency, x.op);
  };
  const warmOps = (n: number, c: number): number => Math.max(Math.ceil(n / 4), Math.min(n, 2 * c));
  interface Group {
    name: string;
    when: boolean;
    warm(): Promise<unknown>;
    once(repeat: number): Promise<Record<string, RunStats>>;
  }
  const groups: Group[] = [
    {
      // Side by side, operation by operation (pairedRun): the ratio figures come from here.
      name: 'hit path c1',
      when: only('hit') || only('handler') || only('dynamo'),
      warm: async () => {
        await pairedRun(warmOps(counts.hitC1, 1), hitC1Ops);
        await alternatingBlocks(2, warmOps(counts.dynC1, 1), 1, dynamoVsHitOps);
      },
      once: async () => ({
        ...(await pairedRun(counts.hitC1, hitC1Ops)),
        ...(await alternatingBlocks(blocks, Math.ceil(counts.dynC1 / blocks), 1, dynamoVsHitOps)),
      }),
    },
    {
      name: 'hit path c64',
      when: only('hit'),
      warm: () => alternatingBlocks(2, warmOps(counts.hitC64, HIGH), HIGH, hitC64Ops),
      once: () => alternatingBlocks(blocks, Math.ceil(counts.hitC64 / blocks), HIGH, hitC64Ops),
    },
    {
      name: 'batch get',
      when: only('batch') || only('dynamo'),
      warm: async () => {
        await pairedRun(warmOps(counts.batchC1, 1), batchC1Ops);
        await alternatingBlocks(2, warmOps(counts.batchC64, HIGH), HIGH, batchC64Ops);
      },
      once: async () => ({
        ...(await pairedRun(counts.batchC1, batchC1Ops)),
        ...(await alternatingBlocks(blocks, Math.ceil(counts.batchC64 / blocks), HIGH, batchC64Ops)),
      }),
    },
    {
      name: 'DynamoDB-bound',
      when: only('ops') || only('dynamo'),
      warm: async () => {
        for (const x of dynamoBound) await runOne(x, warmOps(x.ops, x.concurrency));
      },
      once: async (r) => {
        const out: Record<string, RunStats> = {};
        for (const x of r % 2 === 0 ? dynamoBound : [...dynamoBound].reverse()) out[x.name] = await runOne(x);
        return out;
      },
    },
  ];

  const runs: Record<string, RunStats[]> = {};
  for (const g of groups.filter((x) => x.when)) {
    const t = Date.now();
    await g.warm();
    for (let r = 0; r < counts.repeats; r++) {
      for (const [name, st] of Object.entries(await g.once(r))) (runs[name] ??= []).push(st);
    }
    log(`latency: ${g.name} done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    checkNodes(cache, g.name, anomaly);
  }

  const stats: Record<string, RunStats> = {};
  for (const [name, list] of Object.entries(runs)) stats[name] = medianStats(list);
  const per = (a: string, b: string, f: (x: RunStats, y: RunStats) => number): number[] => {
    const xs = runs[a] ?? [];
    const ys = runs[b] ?? [];
    return xs.map((x, i) => (ys[i] ? f(x, ys[i]) : Number.NaN));
  };
  const ratios = {
    hitVsRawP50: per('library.get-hit.c1', 'raw.hget.c1', (l, r) => l.p50Us / r.p50Us),
    hitVsRawP99: per('library.get-hit.c1', 'raw.hget.c1', (l, r) => l.p99Us / r.p99Us),
    throughputVsRaw: per('library.get-hit.c64', 'raw.hget.c64', (l, r) => l.opsPerSec / r.opsPerSec),
    hitVsRawParsedP50: per('library.get-hit.c1', 'raw.hget-parse.c1', (l, r) => l.p50Us / r.p50Us),
    throughputVsRawParsed: per('library.get-hit.c64', 'raw.hget-parse.c64', (l, r) => l.opsPerSec / r.opsPerSec),
    throughputVsRawDefaults: per('library.get-hit.c64', 'raw.hget-defaults.c64', (l, r) => l.opsPerSec / r.opsPerSec),
    throughputVsOwnRead: per('library.get-hit.c64', 'library.read.c64', (l, r) => l.opsPerSec / r.opsPerSec),
    hitSpeedupVsDynamo: per('dynamo.getitem.c1', 'library.get-hit.c1.loop', (d, l) => d.p50Us / l.p50Us),
    hitSpeedupVsDynamoInterleaved: per('dynamo.getitem.c1.interleaved', 'library.get-hit.c1', (d, l) => d.p50Us / l.p50Us),
    handlerVsLibraryP50: per('handler.get-hit.c1', 'library.get-hit.c1', (h, l) => h.p50Us / l.p50Us),
    batchSpeedupVsDynamo: per('dynamo.batchgetitem-100.c1', 'library.batch-get-100.c1', (d, l) => d.p50Us / l.p50Us),
  };
  return { stats, ratios, anomalies, handlerNote };
}

function checkNodes(cache: ItemCache, during: string, anomaly: (what: string) => void): void {
  for (const h of cache.health()) if (h.status !== 'up') anomaly(`node ${h.address} ${h.status} after ${during}`);
}

/** What API Gateway (HTTP API, payload 2.0) hands the GET handler. */
function getEvent(rawPath: string, i: number): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: '',
    headers: { accept: 'application/json', host: 'bench.execute-api.us-east-1.amazonaws.com', 'user-agent': 'bench' },
    requestContext: {
      accountId: '123456789012',
      apiId: 'bench',
      domainName: 'bench.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'bench',
      http: { method: 'GET', path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
      requestId: `bench-${i}`,
      routeKey: '$default',
      stage: '$default',
      time: '05/Jun/2024:12:00:00 +0000',
      timeEpoch: 1717588800000,
    },
    isBase64Encoded: false,
  };
}
