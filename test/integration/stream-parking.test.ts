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
import { StreamFeed } from '../../infra/local/stream-feed.ts';
import { ConfigError, type ItemCache } from '../../lib/index.ts';
import { createStreamHandler } from '../../functions/stream.ts';
import { createReplayHandler } from '../../functions/replay.ts';

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

  test('the replayer: retried while the node is away, applied and deleted after; REMOVE and malformed records skipped', async () => {
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
      assert.deepEqual(await replay(event), { batchItemFailures: [{ itemIdentifier: '12' }] });
      assert.equal((await parked()).filter((p) => p.id?.S === 'park-1').length, 1, 'kept while unapplied');
    } finally {
      a.resume();
    }
    await eventually('the retry applies once the node answers', async () => (await replay(event)).batchItemFailures.length === 0);
    assert.equal((await stack.cache().get('users', onA)).item?.v, 'new');
    assert.equal((await parked()).filter((p) => p.id?.S === 'park-1').length, 0, 'deleted once applied');
  });

  test('the replayer needs its table', () => {
    assert.throws(() => createReplayHandler(stack.cache({ STREAM_PARKING_TABLE: '' })), ConfigError);
  });
});
