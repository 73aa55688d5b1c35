/**
 * The write path (issue 13), with the Streams consumer running (stream-consumer.ts):
 *
 * - `dynamoReadsPerOwnWrite`: a write-then-read loop over `keys` keys, each written once through the
 *   library (a put, or an update of a loaded item) and read right after; once the consumer has caught
 *   up with every write's record, each key is read again. Figure: DynamoDB reads (GetItem, and keys
 *   of BatchGetItem) per library write, both reads included, counted by a middleware on the
 *   library's DynamoDB client. Items of the bench's usual shape (bench/setup.ts `userItem`, no nested
 *   numbers). The same loop with items that hold numbers inside a map (`...Nested`): such a put reads
 *   the item back for DynamoDB's spelling of them (ItemCache.put), so its figure is about 1.
 * - `putVsDynamoP50`, `updateVsDynamoP50`, `deleteVsDynamoP50`: the library's put, update and delete
 *   against a raw PutItem, UpdateItem and DeleteItem of the same item shape at concurrency 1, sampled
 *   side by side operation by operation (pairedRun), on keys of their own; median over repeats of each
 *   repeat's p50 ratio. The raw put is a blind PutItem, as the figure is defined; the library's put
 *   is conditional on the version, so `putVsConditionalPutP50` also compares it with a PutItem whose
 *   condition reads the item (DynamoDB Local answers those more slowly). The raw update has the
 *   library's condition and answer (ALL_NEW); the raw delete, like the library's, has none.
 * - `putFloorVsDynamoP50`, `putOneTripFloorVsDynamoP50`: the write protocol's floor against the same raw
 *   PutItem, sampled in the same rotation: the library's own `BEGIN_WRITE` and `END_WRITE` scripts,
 *   through its own node client, around the conditional PutItem a library put sends (its version
 *   condition, the right version expected), through the bench's raw client, and nothing else: no
 *   validation, digest, entry encoding or protocol code. The best any implementation of a fence
 *   raised before the commit and answered before the write returns can do on this machine. The
 *   one-trip floor sends the `END_WRITE` without waiting for its answer (the least G1 allows,
 *   ARCHITECTURE.md "How a write travels"); the library waits for it. `putVsFloorP50` is the library's
 *   put against that floor, sampled in the same rotation: what the library's own code adds to the
 *   protocol's cost, whatever DynamoDB's latency.
 * - `redisRoundTripsPerWrite`: Redis commands the library's own node clients send per write, counted
 *   on their `sendCommand` over a loop of puts, updates and deletes at concurrency 1 (each command is
 *   awaited before the next, so commands are round trips); the consumer is paused meanwhile, its
 *   invalidations are not the writer's.
 */
import { DeleteItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import type { ItemCache } from '../lib/item-cache.ts';
import { TABLE, countingDynamoClient, loadItems, ready, userAttributes, userItem, type BenchStack } from './setup.ts';
import { median, medianStats, pairedRun, type RunStats } from './stats.ts';
import { startConsumer } from './stream-consumer.ts';

export interface WritesCounts {
  /** Keys of the write-then-read loop. */
  keys: number;
  /** Operations per repeat of each paired write measurement. */
  paired: number;
  repeats: number;
}

export interface WritesResult {
  dynamoReadsPerOwnWrite: number;
  dynamoReadsPerOwnWriteNested: number;
  /** Where the loop's reads came from: right after the write, and after the consumer caught up. */
  sources: { afterWrite: Record<string, number>; afterCatchUp: Record<string, number> };
  putVsDynamoP50: number;
  updateVsDynamoP50: number;
  deleteVsDynamoP50: number;
  /** Library put p50 / a raw PutItem with a condition that reads the item (as the library's). */
  putVsConditionalPutP50: number;
  /** The protocol's floor (both scripts awaited around the library's conditional PutItem) / raw PutItem. */
  putFloorVsDynamoP50: number;
  /** The same with the `END_WRITE` sent, not waited for. */
  putOneTripFloorVsDynamoP50: number;
  /** Library put p50 / the floor's p50: what the library's own code adds to the protocol's cost. */
  putVsFloorP50: number;
  ratios: {
    put: number[];
    putConditional: number[];
    floor: number[];
    oneTripFloor: number[];
    putVsFloor: number[];
    update: number[];
    delete: number[];
  };
  stats: Record<string, RunStats>;
  redisRoundTripsPerWrite: { put: number; update: number; delete: number };
  /** p50 of a raw Redis PING, sampled beside the puts: the cost of one round trip meanwhile. */
  redisRoundTripP50Us: number;
  consumerRecords: number;
}

/** A user item with numbers nested in a map: DynamoDB's spelling of those is its own. */
function nestedItem(userId: string, i: number): Record<string, unknown> {
  return { ...userItem(userId, i), stats: { visits: i, ratio: i / 8 } };
}

/** Counts the commands the library's node clients send (each one a round trip when awaited alone). */
function countCommands(cache: ItemCache): { count(): number; restore(): void } {
  let n = 0;
  const restores: (() => void)[] = [];
  for (const node of cache.shards.nodes) {
    const client = node.client as unknown as { sendCommand: (...args: unknown[]) => unknown };
    const original = client.sendCommand;
    client.sendCommand = function (this: unknown, ...args: unknown[]) {
      n++;
      return original.apply(this, args);
    };
    restores.push(() => {
      client.sendCommand = original;
    });
  }
  return { count: () => n, restore: () => restores.forEach((r) => r()) };
}

export async function runWrites(stack: BenchStack, counts: WritesCounts, log: (m: string) => void): Promise<WritesResult> {
  const { client, counter } = countingDynamoClient(stack.dynamoEndpoint, false);
  const cache = stack.cache({}, { dynamoClient: client });
  await ready(cache);
  const consumer = await startConsumer(stack);
  try {
    await consumer.caughtUp();
    const table = stack.physicalTable;

    // --- dynamoReadsPerOwnWrite ---------------------------------------------------------------
    const ids = Array.from({ length: counts.keys }, (_, i) => `own${i}`);
    const updIds = ids.filter((_, i) => i % 2 === 1);
    await loadItems(
      stack.dynamo,
      table,
      updIds.map((id, i) => userAttributes(id, i)),
    );
    await consumer.caughtUp();
    const tally = (into: Record<string, number>, source: string): void => {
      into[source] = (into[source] ?? 0) + 1;
    };
    const loop = async (make: (id: string, i: number) => Promise<unknown>, ids: string[]) => {
      const afterWrite: Record<string, number> = {};
      const afterCatchUp: Record<string, number> = {};
      counter.reset();
      for (const [i, userId] of ids.entries()) {
        await make(userId, i);
        tally(afterWrite, (await cache.get(TABLE, { userId })).cache);
      }
      await consumer.caughtUp();
      for (const userId of ids) tally(afterCatchUp, (await cache.get(TABLE, { userId })).cache);
      return { reads: counter.getItem + counter.batchKeys, afterWrite, afterCatchUp };
    };
    const own = await loop(
      (userId, i) =>
        i % 2 === 1 ? cache.update(TABLE, { userId }, { set: { score: i, plan: 'pro' } }) : cache.put(TABLE, userItem(userId, i)),
      ids,
    );
    const dynamoReadsPerOwnWrite = own.reads / ids.length;
    log(
      `writes: ${ids.length} writes (puts and updates), then reads: ${own.reads} DynamoDB reads (${dynamoReadsPerOwnWrite.toFixed(3)} a write); ` +
        `right after the write ${JSON.stringify(own.afterWrite)}, after the consumer caught up ${JSON.stringify(own.afterCatchUp)}`,
    );
    const nestedIds = Array.from({ length: Math.max(20, Math.floor(counts.keys / 5)) }, (_, i) => `nest${i}`);
    const nested = await loop((userId, i) => cache.put(TABLE, nestedItem(userId, i)), nestedIds);
    const dynamoReadsPerOwnWriteNested = nested.reads / nestedIds.length;
    log(
      `writes: ${nestedIds.length} puts with nested numbers: ${nested.reads} DynamoDB reads (${dynamoReadsPerOwnWriteNested.toFixed(3)} a write; ` +
        `after the consumer caught up ${JSON.stringify(nested.afterCatchUp)})`,
    );

    // --- library write vs raw DynamoDB write, c1, side by side --------------------------------
    const n = counts.paired;
    const libPutIds = Array.from({ length: n }, (_, i) => `lp${i}`);
    const rawPutIds = Array.from({ length: n }, (_, i) => `rp${i}`);
    const rawCondPutIds = Array.from({ length: n }, (_, i) => `rc${i}`);
    const libUpdIds = Array.from({ length: n }, (_, i) => `lu${i}`);
    const rawUpdIds = Array.from({ length: n }, (_, i) => `ru${i}`);
    const libDelIds = Array.from({ length: n }, (_, i) => `ld${i}`);
    const rawDelIds = Array.from({ length: n }, (_, i) => `rd${i}`);
    await loadItems(
      stack.dynamo,
      table,
      [...libUpdIds, ...rawUpdIds].map((id, i) => userAttributes(id, i)),
    );
    const rawPut = async (i: number): Promise<void> => {
      await stack.dynamo.send(new PutItemCommand({ TableName: table, Item: userAttributes(rawPutIds[i % n] as string, i) }));
    };
    // The same request with a condition that reads the item, as the library's put has (on its version):
    // DynamoDB Local answers a conditional put more slowly than a blind one.
    const rawCondPut = async (i: number): Promise<void> => {
      await stack.dynamo.send(
        new PutItemCommand({
          TableName: table,
          Item: userAttributes(rawCondPutIds[i % n] as string, i),
          ConditionExpression: 'attribute_not_exists(#v) OR #v >= :zero',
          ExpressionAttributeNames: { '#v': '_version' },
          ExpressionAttributeValues: { ':zero': { N: '0' } },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
    };
    const libPut = async (i: number): Promise<void> => {
      await cache.put(TABLE, userItem(libPutIds[i % n] as string, i));
    };
    // The protocol's floor (see the top of this file): the scripts on a key of the bench's own, the
    // entry an item of the same shape's, the PutItem the library's (expecting the version it wrote).
    const floorNode = cache.shards.nodes[0];
    if (floorNode === undefined) throw new Error('writes: the library instance has no cache node');
    const floorVersions = new Map<string, number>();
    const floorEntry = JSON.stringify(userAttributes('floor', 0));
    const floorCommit = async (id: string, i: number): Promise<void> => {
      const expected = floorVersions.get(id) ?? 0;
      await stack.dynamo.send(
        new PutItemCommand({
          TableName: table,
          Item: { ...userAttributes(id, i), _version: { N: String(expected + 1) } },
          ...(expected === 0
            ? { ConditionExpression: 'attribute_not_exists(#ver)', ExpressionAttributeNames: { '#ver': '_version' } }
            : {
                ConditionExpression: '#ver = :expected',
                ExpressionAttributeNames: { '#ver': '_version' },
                ExpressionAttributeValues: { ':expected': { N: String(expected) } },
              }),
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      floorVersions.set(id, expected + 1);
    };
    const floorPut = async (id: string, i: number, awaitEnd: boolean): Promise<void> => {
      const key = `bench-floor:${id}`;
      const stamp = `b${i}`;
      const tag = floorNode.epochTag;
      await floorNode.client.wtBeginWrite(key, stamp, 3_000, tag);
      await floorCommit(id, i);
      const end = floorNode.client.wtEndWrite(
        key,
        floorNode.sealKeyFor(key),
        stamp,
        `e${i}`,
        'store',
        tag + floorEntry,
        String(i),
        60_000,
        '',
      );
      if (awaitEnd) await end;
      else end.catch(() => undefined);
    };
    const rawUpdate = async (i: number): Promise<void> => {
      await stack.dynamo.send(
        new UpdateItemCommand({
          TableName: table,
          Key: { userId: { S: rawUpdIds[i % n] as string } },
          UpdateExpression: 'SET #s = :s, #p = :p ADD #v :one',
          ConditionExpression: 'attribute_exists(userId)',
          ExpressionAttributeNames: { '#s': 'score', '#p': 'plan', '#v': '_version' },
          ExpressionAttributeValues: { ':s': { N: String(i) }, ':p': { S: 'pro' }, ':one': { N: '1' } },
          ReturnValues: 'ALL_NEW',
        }),
      );
    };
    const libUpdate = async (i: number): Promise<void> => {
      await cache.update(TABLE, { userId: libUpdIds[i % n] as string }, { set: { score: i, plan: 'pro' } });
    };
    const rawDelete = async (i: number): Promise<void> => {
      await stack.dynamo.send(new DeleteItemCommand({ TableName: table, Key: { userId: { S: rawDelIds[i] as string } } }));
    };
    const libDelete = async (i: number): Promise<void> => {
      await cache.delete(TABLE, { userId: libDelIds[i] as string });
    };
    const reloadDeletes = async (): Promise<void> => {
      await loadItems(
        stack.dynamo,
        table,
        [...libDelIds, ...rawDelIds].map((id, i) => userAttributes(id, i)),
      );
    };
    const runs: Record<string, RunStats[]> = {};
    const ratios = {
      put: [] as number[],
      putConditional: [] as number[],
      floor: [] as number[],
      oneTripFloor: [] as number[],
      putVsFloor: [] as number[],
      update: [] as number[],
      delete: [] as number[],
    };
    for (let r = 0; r <= counts.repeats; r++) {
      await reloadDeletes();
      const out = {
        ...(await pairedRun(n, [
          { name: 'library.put.c1', op: libPut },
          { name: 'dynamo.putitem.c1', op: rawPut },
          { name: 'dynamo.putitem-conditional.c1', op: rawCondPut },
          { name: 'floor.put.c1', op: (i) => floorPut(`fp${i % n}`, i, true) },
          { name: 'floor-one-trip.put.c1', op: (i) => floorPut(`f1${i % n}`, i, false) },
          // What one Redis round trip costs meanwhile: a write pays two of them on top of DynamoDB's.
          { name: 'raw.ping.c1', op: () => (stack.raw[0] as (typeof stack.raw)[number]).ping() },
        ])),
        ...(await pairedRun(n, [
          { name: 'library.update.c1', op: libUpdate },
          { name: 'dynamo.updateitem.c1', op: rawUpdate },
        ])),
        ...(await pairedRun(n, [
          { name: 'library.delete.c1', op: libDelete },
          { name: 'dynamo.deleteitem.c1', op: rawDelete },
        ])),
      };
      if (r === 0) continue; // the warm-up
      for (const [k, v] of Object.entries(out)) (runs[k] ??= []).push(v);
      const p = (a: string, b: string): number => (out[a] as RunStats).p50Us / (out[b] as RunStats).p50Us;
      ratios.put.push(p('library.put.c1', 'dynamo.putitem.c1'));
      ratios.putConditional.push(p('library.put.c1', 'dynamo.putitem-conditional.c1'));
      ratios.floor.push(p('floor.put.c1', 'dynamo.putitem.c1'));
      ratios.oneTripFloor.push(p('floor-one-trip.put.c1', 'dynamo.putitem.c1'));
      ratios.putVsFloor.push(p('library.put.c1', 'floor.put.c1'));
      ratios.update.push(p('library.update.c1', 'dynamo.updateitem.c1'));
      ratios.delete.push(p('library.delete.c1', 'dynamo.deleteitem.c1'));
    }
    const stats = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, medianStats(v)]));
    log(
      `writes: p50 ratios put ${ratios.put.map((x) => x.toFixed(2))} (vs a conditional PutItem ${ratios.putConditional.map((x) => x.toFixed(2))}; the protocol's floor ${ratios.floor.map((x) => x.toFixed(2))}, with the end not waited for ${ratios.oneTripFloor.map((x) => x.toFixed(2))}; put vs the floor ${ratios.putVsFloor.map((x) => x.toFixed(2))}), update ${ratios.update.map((x) => x.toFixed(2))}, delete ${ratios.delete.map((x) => x.toFixed(2))}`,
    );

    // --- Redis round trips per write ----------------------------------------------------------
    consumer.feed.pause();
    const trips = { put: 0, update: 0, delete: 0 };
    const per = Math.min(n, 100);
    await reloadDeletes();
    const counted = countCommands(cache);
    try {
      for (const [kind, op] of [
        ['put', libPut],
        ['update', libUpdate],
        ['delete', libDelete],
      ] as const) {
        const before = counted.count();
        for (let i = 0; i < per; i++) await op(i);
        trips[kind] = (counted.count() - before) / per;
      }
    } finally {
      counted.restore();
      consumer.feed.resume();
    }
    log(`writes: Redis round trips per write: put ${trips.put}, update ${trips.update}, delete ${trips.delete}`);

    return {
      dynamoReadsPerOwnWrite,
      dynamoReadsPerOwnWriteNested,
      sources: { afterWrite: own.afterWrite, afterCatchUp: own.afterCatchUp },
      putVsDynamoP50: median(ratios.put),
      putVsConditionalPutP50: median(ratios.putConditional),
      putFloorVsDynamoP50: median(ratios.floor),
      putOneTripFloorVsDynamoP50: median(ratios.oneTripFloor),
      putVsFloorP50: median(ratios.putVsFloor),
      updateVsDynamoP50: median(ratios.update),
      deleteVsDynamoP50: median(ratios.delete),
      ratios,
      stats,
      redisRoundTripsPerWrite: trips,
      redisRoundTripP50Us: stats['raw.ping.c1']?.p50Us ?? Number.NaN,
      consumerRecords: consumer.stats.records,
    };
  } finally {
    await consumer.stop();
  }
}
