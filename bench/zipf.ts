/**
 * Zipf workload: `keys` items, popularity Zipf(s ≈ 1) over a random permutation of them (so hot
 * keys are spread over the shards), 95 % reads / 5 % writes, a fixed count of operations at
 * concurrency 64, after a warm-up that reads every key once (excluded).
 *
 * Writes are library updates. The Streams consumer runs as in production (stream-consumer.ts: DynamoDB
 * Local's stream fed to `invalidateStreamRecords` in a library instance of its own, polled about four
 * times a second), so each write's own record reaches the cache after the stream's lag; with new
 * images in the stream it leaves the write's entry alone unless a later write to the same key was
 * already stored (issue 13). `zipfHitRatioVsIdeal` divides the hit ratio by that of an ideal
 * write-through cache on the same trace: every key's first read misses, nothing else (no expiry, no
 * invalidation of what it holds; a write stores its item). The warm-up's reads are part of that trace,
 * so with every key read once before the measured segments the ideal cache hits every measured read;
 * the ideal's ratio is computed from the trace all the same. DynamoDB's read units are DynamoDB's own accounting (ReturnConsumedCapacity=TOTAL on
 * every read the library sends); "without the cache" is every read a consistent GetItem, as the
 * library does with CACHE_MODE=off, priced at the units DynamoDB reports for such a read of these
 * items. The run is cut into segments; the ratio figures are medians over segments.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { TABLE, countingDynamoClient, inChunks, loadItems, ready, userAttributes, type BenchStack } from './setup.ts';
import { median, prng, shuffle, timedRun, zipfSampler } from './stats.ts';
import { startConsumer } from './stream-consumer.ts';

export interface ZipfCounts {
  keys: number;
  ops: number;
  segments: number;
  concurrency: number;
  exponent: number;
  writeFraction: number;
}

export interface ZipfSegment {
  reads: number;
  hits: number;
  writes: number;
  /** Misses that took the fill lease and refilled the entry; the other misses read around the cache. */
  refills: number;
  /** Reads that met a writer's fence and waited for its store. */
  fenceWaits: number;
  /** Hits an ideal write-through cache would have had on the segment's reads. */
  idealHits: number;
  /** Median write latency: how long a writer's fence keeps readers off its key. */
  writeP50Ms: number;
  dynamoReadRequests: number;
  readUnitsWith: number;
  readUnitsWithout: number;
  opsPerSec: number;
}

export interface ZipfResult {
  segments: ZipfSegment[];
  hitRatio: number;
  /** The ideal write-through cache's hit ratio on the same trace, and hitRatio / that (medians over segments). */
  idealHitRatio: number;
  hitRatioVsIdeal: number;
  /** Records the Streams consumer handled during the run. */
  consumerRecords: number;
  hitRatioOverall: number;
  readUnitsWith: number;
  readUnitsWithout: number;
  readUnitsRatio: number;
  unitsPerConsistentRead: number;
  opsPerSec: number;
  /** Share of all operations that went to the most popular key. */
  hottestKeyShare: number;
  loadMs: number;
  warmupMs: number;
}

export async function runZipf(stack: BenchStack, counts: ZipfCounts, log: (m: string) => void): Promise<ZipfResult> {
  const ids = Array.from({ length: counts.keys }, (_, i) => `z${i}`);
  let t = Date.now();
  await loadItems(
    stack.dynamo,
    stack.physicalTable,
    ids.map((id, i) => userAttributes(id, i)),
    16,
  );
  const loadMs = Date.now() - t;
  log(`zipf: ${counts.keys} items loaded in ${(loadMs / 1000).toFixed(1)} s`);

  const { client, counter } = countingDynamoClient(stack.dynamoEndpoint, true);
  // Misses that took the fill lease (a refill) vs the others (a writer's fence was up, or another
  // reader's fill did not land in time): read from DynamoDB without filling.
  let refills = 0;
  // What each read met, through the protocol's hooks (called in the read's own async context).
  const met = new AsyncLocalStorage<{ fence: boolean; lease: boolean; refill: boolean }>();
  const cache = stack.cache(
    {},
    {
      dynamoClient: client,
      hooks: {
        afterLease: () => {
          refills++;
          const m = met.getStore();
          if (m) m.refill = true;
        },
        fenceWait: () => {
          const m = met.getStore();
          if (m) m.fence = true;
        },
        leaseWait: () => {
          const m = met.getStore();
          if (m) m.lease = true;
        },
      },
    },
  );
  await ready(cache);
  const consumer = await startConsumer(stack);
  await consumer.caughtUp();
  // The ideal write-through cache: the keys it holds (every key's first read misses, nothing else).
  const idealHolds = new Set<number>();

  // Warm-up: every key read once, 100 at a time.
  t = Date.now();
  for (let k = 0; k < ids.length; k++) idealHolds.add(k);
  await inChunks(ids, 100, 8, async (chunk) => {
    await cache.batchGet(
      TABLE,
      chunk.map((userId) => ({ userId })),
    );
  });
  const warmupMs = Date.now() - t;
  log(`zipf: warm-up (every key read once) in ${(warmupMs / 1000).toFixed(1)} s`);

  // What one consistent GetItem of these items costs, by DynamoDB's accounting.
  counter.reset();
  const sample = Math.min(50, ids.length);
  for (let i = 0; i < sample; i++) {
    await client.send(
      new GetItemCommand({
        TableName: stack.physicalTable,
        Key: { userId: { S: ids[(i * 7919) % ids.length] as string } },
        ConsistentRead: true,
      }),
    );
  }
  const unitsPerConsistentRead = counter.readUnits / sample;

  // The workload, fixed in advance.
  const random = prng(1_000_003);
  const rankToKey = shuffle(
    Array.from({ length: counts.keys }, (_, i) => i),
    random,
  );
  const sampleRank = zipfSampler(counts.keys, counts.exponent, random);
  const keyOf = new Int32Array(counts.ops);
  const isWrite = new Uint8Array(counts.ops);
  let hottest = 0;
  for (let i = 0; i < counts.ops; i++) {
    const rank = sampleRank();
    if (rank === 0) hottest++;
    keyOf[i] = rankToKey[rank] as number;
    isWrite[i] = random() < counts.writeFraction ? 1 : 0;
  }

  const segments: ZipfSegment[] = [];
  const per = Math.floor(counts.ops / counts.segments);
  for (let s = 0; s < counts.segments; s++) {
    const base = s * per;
    let reads = 0;
    let hits = 0;
    let writes = 0;
    let idealHits = 0;
    let fenceWaits = 0;
    /** Misses that did not refill, by what the reader met first: a writer's fence, another reader's lease, neither. */
    const around = { fence: 0, lease: 0, neither: 0 };
    refills = 0;
    const writeUs: number[] = [];
    counter.reset();
    // The ideal cache on the segment's trace, in trace order.
    for (let j = 0; j < per; j++) {
      const k = keyOf[base + j] as number;
      if (isWrite[base + j] !== 1 && idealHolds.has(k)) idealHits++;
      idealHolds.add(k);
    }
    const run = await timedRun(per, counts.concurrency, async (j) => {
      const i = base + j;
      const userId = ids[keyOf[i] as number] as string;
      if (isWrite[i] === 1) {
        writes++;
        const t0 = process.hrtime.bigint();
        await cache.update(TABLE, { userId }, { set: { score: i } });
        writeUs.push(Number(process.hrtime.bigint() - t0) / 1000);
      } else {
        reads++;
        const m = { fence: false, lease: false, refill: false };
        const r = await met.run(m, () => cache.get(TABLE, { userId }));
        if (r.cache === 'hit') hits++;
        if (m.fence) fenceWaits++;
        if (r.cache !== 'hit' && !m.refill) around[m.fence ? 'fence' : m.lease ? 'lease' : 'neither']++;
      }
    });
    segments.push({
      reads,
      hits,
      writes,
      refills,
      fenceWaits,
      idealHits,
      writeP50Ms: median(writeUs) / 1000,
      dynamoReadRequests: counter.getItem + counter.batchGetItem,
      readUnitsWith: counter.readUnits,
      readUnitsWithout: reads * unitsPerConsistentRead,
      opsPerSec: run.opsPerSec,
    });
    log(
      `zipf: segment ${s + 1}/${counts.segments}: hit ratio ${(hits / reads).toFixed(4)} (${reads - hits} misses: ${refills} refills, ${reads - hits - refills} read around the cache, ${JSON.stringify(around)} by what they waited on; ${fenceWaits} reads waited on a writer's fence), ideal ${(idealHits / reads).toFixed(4)}, ${writes} writes, ${Math.round(run.opsPerSec)} ops/s, write p50 ${(median(writeUs) / 1000).toFixed(1)} ms`,
    );
  }
  await consumer.stop();
  const sum = (f: (x: ZipfSegment) => number): number => segments.reduce((n, x) => n + f(x), 0);
  return {
    segments,
    hitRatio: median(segments.map((x) => x.hits / x.reads)),
    idealHitRatio: median(segments.map((x) => x.idealHits / x.reads)),
    hitRatioVsIdeal: median(segments.map((x) => x.hits / x.idealHits)),
    consumerRecords: consumer.stats.records,
    hitRatioOverall: sum((x) => x.hits) / sum((x) => x.reads),
    readUnitsWith: sum((x) => x.readUnitsWith),
    readUnitsWithout: sum((x) => x.readUnitsWithout),
    readUnitsRatio: median(segments.map((x) => x.readUnitsWith / x.readUnitsWithout)),
    unitsPerConsistentRead,
    opsPerSec: median(segments.map((x) => x.opsPerSec)),
    hottestKeyShare: hottest / counts.ops,
    loadMs,
    warmupMs,
  };
}
