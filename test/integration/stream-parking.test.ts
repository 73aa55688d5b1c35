/**
 * Parked invalidations (lib/stream/parking.ts): a record whose node is unreachable no longer holds
 * its stream shard. It is parked in a DynamoDB table, the shard moves on, and the replayer (fed by
 * the parking table's own stream) applies it once the node answers again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutItemCommand, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { eventually, startStack, type TestStack } from '../helpers/stack.ts';
import { batch, streamRecord } from '../helpers/stream-records.ts';
import { localDynamoClientConfig } from '../helpers/dynamodb-local.ts';
import type { RedisServer } from '../helpers/redis-server.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { endSettle, faultyDynamoClient } from '../helpers/faults.ts';
import { StreamFeed } from '../../infra/local/stream-feed.ts';
import { ConfigError, type ItemCache } from '../../lib/index.ts';
import { FIRST_SWEEP_DELAY_MS, parkInvalidation } from '../../lib/stream/parking.ts';
import { createStreamHandler } from '../../functions/stream.ts';
import { createReplayHandler } from '../../functions/replay.ts';
import { createSweepHandler } from '../../functions/sweep.ts';
import { sweepParkedInvalidations } from '../../lib/stream/sweep.ts';

describe('parked invalidations', () => {
  let stack: TestStack;
  let writer: ItemCache;
  before(async () => {
    stack = await startStack({ shards: 3, parking: true });
    writer = stack.cache();
  });
  after(async () => stack.stop());

  /** Two users whose entries live on different redis-servers, and the first one's server. */
  function usersOnTwoServers(cache: ItemCache, tag: string): { onA: { userId: string }; onB: { userId: string }; a: RedisServer } {
    const [a, b] = stack.usersOnDistinctServers(cache, tag);
    return { onA: a!.key, onB: b!.key, a: a!.server };
  }

  async function writeAround(userId: string, v: string): Promise<void> {
    await stack.dynamo.send(
      new PutItemCommand({
        TableName: `${stack.prefix}users`,
        Item: { userId: { S: userId }, v: { S: v }, _version: { N: String(Date.now()) } },
      }),
    );
  }

  async function parked(): Promise<Record<string, AttributeValue>[]> {
    return (await stack.dynamo.send(new ScanCommand({ TableName: stack.parkingTable, ConsistentRead: true }))).Items ?? [];
  }

  test('end to end: a hung node holds back nothing behind it; its invalidation is applied when it answers again', async () => {
    const consumer = stack.cache();
    const replayer = stack.cache();
    const { onA, onB, a } = usersOnTwoServers(writer, 'e2e');
    const feed = new StreamFeed({
      client: localDynamoClientConfig(stack.env.DYNAMODB_ENDPOINT),
      tables: stack.tables.map((t) => stack.prefix + t.name),
      handler: createStreamHandler(consumer),
      subscriptions: [{ table: stack.parkingTable as string, handler: createReplayHandler(replayer) }],
      pollMs: 50,
    });
    await feed.start();
    try {
      for (const k of [onA, onB]) await writer.put('users', { ...k, v: 'old' });
      // The puts' own records are applied before the fault, so only the out-of-band writes meet it.
      await eventually('the puts’ records are applied', async () => feed.stats.records >= 2);
      for (const k of [onA, onB]) {
        await writer.get('users', k);
        assert.equal((await writer.get('users', k)).cache, 'hit');
      }
      // A hang: the node comes back with its entries (R9), so the invalidation must still reach it.
      a.pause();
      try {
        // In stream order, and in separate batches: the record for the hung node first (handled:
        // parked, or failed and up for a retry), the healthy node's behind it.
        const handled = feed.stats.batches + feed.stats.retries;
        await writeAround(onA.userId, 'new');
        await eventually('the hung node’s record is handled', async () => feed.stats.batches + feed.stats.retries > handled);
        await writeAround(onB.userId, 'new');
        await eventually(
          'the healthy node’s record is applied while the hung node is still away',
          async () => (await writer.get('users', onB)).item?.v === 'new',
        );
        const held = await parked();
        assert.deepEqual(
          held.map((p) => p.table?.S),
          [`${stack.prefix}users`],
          'the hung node’s record is parked, nothing else',
        );
        assert.match(held[0]?.keys?.S ?? '', new RegExp(onA.userId));
        assert.match(held[0]?.node?.S ?? '', new RegExp(`:${a.port}$`));
      } finally {
        a.resume();
      }
      // A container that never saw the hang trusts the node at once: it must read the new value
      // once the replayer got through, and the parking table empties.
      const fresh = stack.cache();
      await eventually('the parked invalidation reaches the node', async () => (await fresh.get('users', onA)).item?.v === 'new');
      await eventually('the applied parking is deleted', async () => (await parked()).length === 0);
    } finally {
      await feed.stop();
    }
  });

  test('no invalidation waits behind another node’s outage: with more than a batch parked for a node that is away, a healthy node’s parked record applies at once; the sweep applies the rest once the node is back', async () => {
    // A stack of its own: its streams hold only this test's records, so the count below is exact.
    const own = await startStack({ shards: 3, parking: true });
    const stack = own;
    const writer = own.cache();
    const parked = async (): Promise<Record<string, AttributeValue>[]> =>
      (await own.dynamo.send(new ScanCommand({ TableName: own.parkingTable, ConsistentRead: true }))).Items ?? [];
    const writeAround = async (userId: string, v: string): Promise<void> => {
      await own.dynamo.send(
        new PutItemCommand({
          TableName: `${own.prefix}users`,
          Item: { userId: { S: userId }, v: { S: v }, _version: { N: String(Date.now()) } },
        }),
      );
    };
    const [onA, onB] = stack.usersOnDistinctServers(writer, 'hol');
    const a = onA!.server;
    const b = onB!.server;
    // More than a replay batch (100) of records for items on A, each written around the library.
    const aUsers: string[] = [];
    for (let i = 0; aUsers.length < 120; i++) {
      const userId = `hol-a-${i}`;
      if (stack.serverOf(writer, writer.resolve('users', { userId })) === a) aUsers.push(userId);
    }
    // The consumer's container reaches B through a proxy: a drop only it sees parks B's record too.
    const toB = await TcpProxy.start(b.port);
    const consumer = stack.cache({ CACHE_NODES: stack.servers.map((s) => (s === b ? toB.url : s.url)).join(',') });
    const replayer = stack.cache();
    const feed = new StreamFeed({
      client: localDynamoClientConfig(stack.env.DYNAMODB_ENDPOINT),
      tables: stack.tables.map((t) => stack.prefix + t.name),
      handler: createStreamHandler(consumer),
      subscriptions: [{ table: stack.parkingTable as string, handler: createReplayHandler(replayer) }],
      pollMs: 50,
    });
    await feed.start();
    try {
      for (const k of [onA!.key, onB!.key]) await writer.put('users', { ...k, v: 'old' });
      await eventually('the puts’ records are applied', async () => feed.stats.records >= 2);
      for (const k of [onA!.key, onB!.key]) {
        await writer.get('users', k);
        assert.equal((await writer.get('users', k)).cache, 'hit');
      }
      a.pause();
      try {
        for (const userId of [onA!.key.userId, ...aUsers]) await writeAround(userId, 'new');
        await eventually('every record for A is parked', async () => (await parked()).length >= aUsers.length + 1, 60_000);
        toB.cut();
        await writeAround(onB!.key.userId, 'new');
        // The cut stays: in Lambda nothing guarantees that the consumer's container, which keeps
        // B's key dirty, lives to repair it; only the parked copy is sure to.
        // A container that never saw a fault reads B's new value while A is still away: the
        // replayer applied B's parking (and deleted it) past the hundred-odd of A's before it.
        const fresh = stack.cache();
        await eventually(
          'the healthy node’s parked invalidation is applied while A is away',
          async () => (await fresh.get('users', onB!.key)).item?.v === 'new',
        );
        assert.ok(
          consumer.health().some((h) => h.address === toB.url && h.status === 'down'),
          'the consumer could not apply it (its node is down for it; it keeps no dirty keys)',
        );
        assert.ok(
          (await parked()).every((p) => p.keys?.S?.includes(`"${onB!.key.userId}"`) !== true),
          'applied from the parking table',
        );
        assert.equal((await fresh.get('users', onA!.key)).cache, 'bypass', 'A is still away');
        // A sweep while A is away applies nothing there and pushes each item's next attempt back.
        const sweeper = stack.cache();
        const due = Date.now() + FIRST_SWEEP_DELAY_MS;
        const early = await sweepParkedInvalidations(sweeper, stack.parkingTable as string, { now: due });
        assert.equal(early.applied, 0);
        assert.ok(early.deferred >= aUsers.length + 1, `deferred ${early.deferred}`);
        const held = await parked();
        assert.ok(
          held.every((p) => p.attempts?.N === '1' && Number(p.nextAttemptAt?.N) > due),
          'each item backs off on its own',
        );
        // Before they are due again, with A still away, a sweep writes nothing.
        const waiting = await sweepParkedInvalidations(sweeper, stack.parkingTable as string, { now: due + 1000 });
        assert.equal(waiting.waiting, held.length);
        assert.equal(waiting.deferred, 0);
        assert.ok((await parked()).every((p) => p.attempts?.N === '1'));
      } finally {
        a.resume();
      }
      // The scheduled sweep, once A answers again: everything parked applies and the table empties,
      // though no item's back-off has passed (a sweep retries early an item whose node answers).
      const sweep = createSweepHandler(stack.cache());
      const done = await sweepParkedInvalidations(stack.cache(), stack.parkingTable as string);
      assert.ok(done.applied >= aUsers.length + 1, `applied ${done.applied}`);
      assert.equal((await parked()).length, 0);
      assert.equal((await stack.cache().get('users', onA!.key)).item?.v, 'new');
      assert.deepEqual(await sweep(), { applied: 0, deferred: 0, waiting: 0, expired: 0, skipped: 0, failed: 0, complete: true });
    } finally {
      await feed.stop();
      toB.heal();
      await toB.stop();
      await own.stop();
    }
  });

  test('the consumer answers a parked record as done; one it cannot park is reported, as without parking', async () => {
    const { onA, onB, a } = usersOnTwoServers(writer, 'handler');
    const records = [
      streamRecord(stack, 'users', { userId: { S: onA.userId } }, '700'),
      streamRecord(stack, 'users', { userId: { S: onB.userId } }, '701'),
    ];
    await a.kill();
    try {
      const parking = createStreamHandler(stack.cache());
      assert.deepEqual(await parking(batch(...records)), { batchItemFailures: [] });
      const held = (await parked()).filter((p) => p.id?.S === 'event-700');
      assert.equal(held.length, 1);
      assert.ok(Number(held[0]?.expiresAt?.N) > Date.now() / 1000 + 3600, 'kept at least the entry TTL');
      assert.match(held[0]?.reason?.S ?? '', /./);

      const noTable = createStreamHandler(stack.cache({ STREAM_PARKING_TABLE: `${stack.prefix}no-such-table` }));
      assert.deepEqual(await noTable(batch(...records)), { batchItemFailures: [{ itemIdentifier: '700' }] });
      const unset = createStreamHandler(stack.cache({ STREAM_PARKING_TABLE: '' }));
      assert.deepEqual(await unset(batch(...records)), { batchItemFailures: [{ itemIdentifier: '700' }] });
    } finally {
      await a.restart({ keepData: false });
    }
  });

  test('the replayer: a record it cannot apply yet is answered as done and stays parked; applied and deleted after; sweep updates, REMOVE and malformed records skipped', async () => {
    const replayer = stack.cache();
    const replay = createReplayHandler(replayer);
    const { onA, a } = usersOnTwoServers(writer, 'replay');
    await writer.put('users', { ...onA, v: 'old' });
    await writeAround(onA.userId, 'new');
    const image = {
      id: { S: 'park-1' },
      table: { S: `${stack.prefix}users` },
      keys: { S: JSON.stringify({ userId: { S: onA.userId } }) },
      parkedAt: { N: '1' },
    };
    await stack.dynamo.send(new PutItemCommand({ TableName: stack.parkingTable, Item: image }));
    const record = (seq: string, eventName: DynamoDBRecord['eventName'], NewImage?: object): DynamoDBRecord => ({
      eventID: `p-${seq}`,
      eventName,
      dynamodb: { SequenceNumber: seq, ...(NewImage ? { NewImage } : {}) } as DynamoDBRecord['dynamodb'],
    });
    const event = batch(record('10', 'REMOVE'), record('11', 'INSERT', { id: { S: 'broken' } }), record('12', 'INSERT', image));
    a.pause();
    try {
      assert.deepEqual(await replay(event), { batchItemFailures: [] });
      assert.equal((await parked()).filter((p) => p.id?.S === 'park-1').length, 1, 'kept while unapplied');
    } finally {
      a.resume();
    }
    // A sweep's update of the item (attempts above 0) is the sweep's to retry, not the replayer's.
    assert.deepEqual(await replay(batch(record('13', 'MODIFY', { ...image, attempts: { N: '1' } }))), { batchItemFailures: [] });
    assert.equal((await parked()).filter((p) => p.id?.S === 'park-1').length, 1, 'a sweep update is not replayed');
    await eventually('a later delivery applies once the node answers', async () => {
      await replay(event);
      return (await parked()).every((p) => p.id?.S !== 'park-1');
    });
    assert.equal((await stack.cache().get('users', onA)).item?.v, 'new');
  });

  test('the sweep: an expired parking, or one that can never apply, is deleted without an attempt; a DynamoDB failure on one item leaves the rest swept', async () => {
    const { onA, onB, a } = usersOnTwoServers(writer, 'sweep');
    const item = (id: string, userId: string, expiresAt: number) => ({
      id: { S: id },
      table: { S: `${stack.prefix}users` },
      keys: { S: JSON.stringify({ userId: { S: userId } }) },
      node: { S: '' },
      reason: { S: 'test' },
      parkedAt: { N: '1' },
      attempts: { N: '0' },
      nextAttemptAt: { N: '1' },
      expiresAt: { N: String(expiresAt) },
    });
    const later = Math.ceil(Date.now() / 1000) + 3600;
    // Other tests' parkings applied first, so that the counts below are this test's alone.
    await sweepParkedInvalidations(stack.cache(), stack.parkingTable as string, { now: Date.now() + 3_600_000 });
    assert.deepEqual(await parked(), []);
    // An expired parking, its node away: deleted, no attempt (an attempt would defer it).
    // And one that can never apply (a table no longer declared): deleted, not met again every run.
    await stack.dynamo.send(new PutItemCommand({ TableName: stack.parkingTable, Item: item('sweep-expired', onA.userId, 1) }));
    const foreign = { ...item('sweep-foreign', onA.userId, Math.ceil(Date.now() / 1000) + 3600), table: { S: 'someone-elses-table' } };
    await stack.dynamo.send(new PutItemCommand({ TableName: stack.parkingTable, Item: foreign }));
    a.pause();
    try {
      const res = await sweepParkedInvalidations(stack.cache(), stack.parkingTable as string);
      assert.deepEqual(res, { applied: 0, deferred: 0, waiting: 0, expired: 1, skipped: 1, failed: 0, complete: true });
    } finally {
      a.resume();
    }
    assert.deepEqual(await parked(), []);
    // Two live parkings; the first DeleteItem the sweep sends fails before reaching DynamoDB.
    for (const it of [item('sweep-1', onA.userId, later), item('sweep-2', onB.userId, later)]) {
      await stack.dynamo.send(new PutItemCommand({ TableName: stack.parkingTable, Item: it }));
    }
    const { client, faults } = faultyDynamoClient();
    faults.before.push('DeleteItemCommand');
    const sweeper = stack.cache({}, { dynamoClient: client });
    const res = await sweepParkedInvalidations(sweeper, stack.parkingTable as string, { concurrency: 1 });
    assert.equal(res.failed, 1);
    assert.equal(res.applied, 1);
    const left = (await parked()).filter((p) => p.id?.S?.startsWith('sweep-'));
    assert.equal(left.length, 1, 'only the item whose delete failed is left, for the next run');
    const again = await sweepParkedInvalidations(sweeper, stack.parkingTable as string);
    assert.equal(again.failed, 0);
    assert.equal((await parked()).filter((p) => p.id?.S?.startsWith('sweep-')).length, 0);
  });

  test('a replay mapping created after records were parked reads them: every mapping starts at the trim horizon', async () => {
    const { onA } = usersOnTwoServers(writer, 'late');
    // A container of its own: the shared writer's node state is what the tests before left it.
    const cacheOld = stack.cache();
    await cacheOld.get('users', onA);
    await endSettle(cacheOld.nodeFor(cacheOld.resolve('users', onA))!); // an earlier test's fault may still settle it
    await cacheOld.put('users', { ...onA, v: 'old' });
    await writeAround(onA.userId, 'new');
    const consumer = stack.cache();
    const rk = consumer.resolve('users', onA);
    await parkInvalidation(consumer, stack.parkingTable as string, {
      eventID: 'late-1',
      rk,
      physicalTable: `${stack.prefix}users`,
      keys: { userId: { S: onA.userId } },
      node: '',
      reason: 'parked before the replay mapping existed',
    });
    assert.equal((await cacheOld.get('users', onA)).item?.v, 'old');
    // The replay mapping, created now, with the deploy's settings.
    const feed = new StreamFeed({
      client: localDynamoClientConfig(stack.env.DYNAMODB_ENDPOINT),
      tables: [],
      handler: async () => {},
      subscriptions: [{ table: stack.parkingTable as string, handler: createReplayHandler(stack.cache()) }],
      pollMs: 50,
    });
    assert.equal(feed.mapping.startingPosition, 'TRIM_HORIZON');
    await feed.start();
    try {
      await eventually('the parking is applied and deleted', async () => (await parked()).every((p) => p.id?.S !== 'late-1'));
      assert.equal((await stack.cache().get('users', onA)).item?.v, 'new');
    } finally {
      await feed.stop();
    }
  });

  test('the replayer and the sweep need their table', () => {
    assert.throws(() => createReplayHandler(stack.cache({ STREAM_PARKING_TABLE: '' })), ConfigError);
    assert.throws(() => createSweepHandler(stack.cache({ STREAM_PARKING_TABLE: '' })), ConfigError);
  });
});
