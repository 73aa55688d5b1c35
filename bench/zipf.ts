/**
 * Zipf workload: `keys` items, popularity Zipf(s ≈ 1) over a random permutation of them (so hot
 * keys are spread over the shards), 95 % reads / 5 % writes, a fixed count of operations at
 * concurrency 64, after a warm-up that reads every key once (excluded).
 *
 * Writes are library updates; each is followed, as in production, by the stream consumer's
 * invalidation of that item (a separate library instance, sent as soon as the write is answered:
 * zero stream lag, the least favourable case for the hit ratio, since every write then costs a
 * refill). DynamoDB's read units are DynamoDB's own accounting (ReturnConsumedCapacity=TOTAL on
 * every read the library sends); "without the cache" is every read a consistent GetItem, as the
 * library does with CACHE_MODE=off, priced at the units DynamoDB reports for such a read of these
 * items. The run is cut into segments; the ratio figures are medians over segments.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { TABLE, countingDynamoClient, inChunks, loadItems, ready, userAttributes, type BenchStack } from './setup.ts';
import { median, prng, shuffle, timedRun, zipfSampler } from './stats.ts';

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
  const cache = stack.cache({}, { dynamoClient: client, hooks: { afterLease: () => void refills++ } });
  const consumer = stack.cache();
  await ready(cache);
  await ready(consumer);

  // Warm-up: every key read once, 100 at a time.
  t = Date.now();
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
    refills = 0;
    const writeUs: number[] = [];
    const invalidations: Promise<void>[] = [];
    counter.reset();
    const run = await timedRun(per, counts.concurrency, async (j) => {
      const i = base + j;
      const userId = ids[keyOf[i] as number] as string;
      if (isWrite[i] === 1) {
        writes++;
        const t0 = process.hrtime.bigint();
        await cache.update(TABLE, { userId }, { set: { score: i } });
        writeUs.push(Number(process.hrtime.bigint() - t0) / 1000);
        // The item's stream record reaches the consumer, which drops the entry.
        invalidations.push(
          consumer.invalidate(consumer.resolve(TABLE, { userId })).then(
            () => {},
            () => {},
          ),
        );
      } else {
        reads++;
        const r = await cache.get(TABLE, { userId });
        if (r.cache === 'hit') hits++;
      }
    });
    await Promise.all(invalidations);
    segments.push({
      reads,
      hits,
      writes,
      refills,
      writeP50Ms: median(writeUs) / 1000,
      dynamoReadRequests: counter.getItem + counter.batchGetItem,
      readUnitsWith: counter.readUnits,
      readUnitsWithout: reads * unitsPerConsistentRead,
      opsPerSec: run.opsPerSec,
    });
    log(
      `zipf: segment ${s + 1}/${counts.segments}: hit ratio ${(hits / reads).toFixed(4)} (${reads - hits} misses: ${refills} refills, ${reads - hits - refills} read around a writer's fence), ${writes} writes, ${Math.round(run.opsPerSec)} ops/s, write p50 ${(median(writeUs) / 1000).toFixed(1)} ms`,
    );
  }
  const sum = (f: (x: ZipfSegment) => number): number => segments.reduce((n, x) => n + f(x), 0);
  return {
    segments,
    hitRatio: median(segments.map((x) => x.hits / x.reads)),
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
