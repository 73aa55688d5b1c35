/**
 * Issue 13: the cache keeps what the library's own writes store. A table's stream carries new images
 * (tables.json: NEW_IMAGE by default), and a record whose new image has the version and content digest the
 * entry already holds leaves it alone (INVALIDATE in lib/cache/scripts.ts, lib/stream/recorded.ts),
 * while every out-of-band change still reaches readers. Against real redis-servers and DynamoDB
 * Local with its stream, fed to the consumer as Lambda's mapping would (infra/local/stream-feed.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DeleteItemCommand, GetItemCommand, PutItemCommand, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { eventually, Gate, startStack, type TestStack } from '../helpers/stack.ts';
import { batch } from '../helpers/stream-records.ts';
import { localDynamoClientConfig } from '../helpers/dynamodb-local.ts';
import { entryFields, faultyDynamoClient, streamRecord } from '../helpers/faults.ts';
import { StreamFeed } from '../../infra/local/stream-feed.ts';
import { NumberValue, type ItemCache } from '../../lib/index.ts';
import { parkInvalidation } from '../../lib/stream/parking.ts';
import { recordedState } from '../../lib/stream/recorded.ts';
import { itemDigest } from '../../lib/digest.ts';
import { encodeEntry, entryOf, toAttributes } from '../../lib/codec.ts';
import { ENTRY_TAG_LENGTH } from '../../lib/cache/scripts.ts';
import { createStreamHandler, type StreamHandler } from '../../functions/stream.ts';
import { createReplayHandler } from '../../functions/replay.ts';

describe('keeping what the library’s own writes store (issue 13)', () => {
  let stack: TestStack;
  /** Reads and writes through this one; `gets` counts its DynamoDB reads. */
  let cache: ItemCache;
  let calls: string[];
  let feed: StreamFeed;
  /** Every record the consumer was handed, once it answered. */
  const seen: DynamoDBRecord[] = [];
  let consume: StreamHandler;
  const gets = (): number => calls.filter((c) => c === 'GetItemCommand' || c === 'BatchGetItemCommand').length;

  before(async () => {
    stack = await startStack({ shards: 3, parking: true });
    const counting = faultyDynamoClient();
    calls = counting.calls;
    cache = stack.cache({}, { dynamoClient: counting.client });
    consume = createStreamHandler(stack.cache());
    // Only the users table is fed: the orders table's records are handed to the consumer by hand below.
    feed = new StreamFeed({
      client: localDynamoClientConfig(stack.env.DYNAMODB_ENDPOINT),
      tables: [`${stack.prefix}users`],
      handler: async (event) => {
        const answer = await consume(event);
        seen.push(...event.Records);
        return answer;
      },
      pollMs: 50,
    });
    await feed.start();
  });
  after(async () => {
    await feed.stop();
    await stack.stop();
  });

  /** Waits until the consumer has answered the record of `userId`'s change to `version` (or its deletion). */
  async function applied(userId: string, version: number | 'REMOVE'): Promise<void> {
    await eventually(`the record of ${userId} at ${version} is applied`, async () =>
      seen.some(
        (r) =>
          r.dynamodb?.Keys?.userId?.S === userId &&
          (version === 'REMOVE' ? r.eventName === 'REMOVE' : r.dynamodb?.NewImage?._version?.N === String(version)),
      ),
    );
  }

  const usersTable = (): string => `${stack.prefix}users`;

  test('the stream carries new images (the view type tables.json declares)', async () => {
    await cache.put('users', { userId: 'view', v: 'a' });
    await applied('view', 1);
    const r = seen.find((x) => x.dynamodb?.Keys?.userId?.S === 'view');
    assert.equal(r?.dynamodb?.StreamViewType, 'NEW_IMAGE');
    assert.equal(r?.dynamodb?.NewImage?.v?.S, 'a');
  });

  test('a library write followed by reads, with the consumer caught up, hits without another DynamoDB read', async () => {
    // Prepare: a put, an update and a delete through the library, with nested numbers nowhere. A
    // record of an item's earlier state that arrives after a later write drops that write's entry
    // (the rule cannot tell an older state from a revert to it: when in doubt, invalidate), so each
    // item's earlier record is applied before its next write, as when writes to one item are further
    // apart than the stream's lag.
    await cache.put('users', { userId: 'own-put', v: 'p', n: 1.5, tags: new Set(['b', 'a']) });
    await cache.put('users', { userId: 'own-upd', v: 'u0' });
    await cache.put('users', { userId: 'own-del', v: 'd' });
    await applied('own-upd', 1);
    await applied('own-del', 1);
    await cache.update('users', { userId: 'own-upd' }, { set: { v: 'u1' } });
    await cache.delete('users', { userId: 'own-del' });
    await applied('own-put', 1);
    await applied('own-upd', 2);
    await applied('own-del', 'REMOVE');
    const before = gets();
    // Act
    const put = await cache.get('users', { userId: 'own-put' });
    const upd = await cache.get('users', { userId: 'own-upd' });
    const del = await cache.get('users', { userId: 'own-del' });
    // Assess
    assert.deepEqual([put.cache, upd.cache, del.cache], ['hit', 'hit', 'hit'], 'every write’s own record left its entry in place');
    assert.deepEqual(put.item, { userId: 'own-put', v: 'p', n: 1.5, tags: new Set(['b', 'a']) });
    assert.equal(upd.item?.v, 'u1');
    assert.equal(upd.version, 2);
    assert.equal(del.item, undefined);
    assert.equal(gets() - before, 0, 'no DynamoDB read');
  });

  test('a large item’s entry carries the digest of what was stored, whether its first attempt wrote it or a retry did', async () => {
    // Prepare: items over 64 KB as DynamoDB counts them (their digest is made while DynamoDB stores
    // them), with numbers inside a list and a map (so read back); in the orders table, whose records
    // nobody feeds to the consumer here. `retried` exists already at version 5 while the cache knows
    // nothing of it, so the put's first attempt (version 0 expected) loses and a second one writes 6.
    const long = `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`;
    const key = (orderId: string) => ({ customerId: 'large', orderId });
    const item = (orderId: string) => ({ ...key(orderId), s: 'x'.repeat(70_000), l: [1.5, 2, '3'], m: { n: [new NumberValue(long)] } });
    const ordersTable = `${stack.prefix}orders`;
    await stack.dynamo.send(
      new PutItemCommand({
        TableName: ordersTable,
        Item: { customerId: { S: 'large' }, orderId: { S: 'retried' }, _version: { N: '5' }, s: { S: 'old' } },
      }),
    );
    // Act
    const first = await cache.put('orders', item('first'));
    const retried = await cache.put('orders', item('retried'));
    const flatItem = { ...key('flat'), s: 'x'.repeat(70_000), n: new NumberValue(long) };
    const flat = await cache.put('orders', flatItem);
    // Assess
    const firstStored = await stack.dynamo.send(
      new GetItemCommand({ TableName: ordersTable, Key: { customerId: { S: 'large' }, orderId: { S: 'first' } }, ConsistentRead: true }),
    );
    assert.deepStrictEqual(first, entryOf(firstStored.Item ?? {}, '_version'), 'the answer is the stored item');
    assert.equal(first.version, 1);
    assert.equal(retried.version, 6, 'the first attempt lost its version race');
    // Not read back (no nested numbers): the entry is the written item's, in its own order, as before.
    const flatFields = await entryFields(cache, cache.resolve('orders', key('flat')));
    const flatData = encodeEntry({ ...toAttributes(flatItem), _version: { N: '1' } }, '_version');
    assert.equal(flatFields.d?.slice(ENTRY_TAG_LENGTH), flatData);
    assert.equal(flatFields.g, itemDigest({ ...toAttributes(flatItem), _version: { N: '1' } }));
    assert.deepStrictEqual(flat, entryOf({ ...toAttributes(flatItem), _version: { N: '1' } }, '_version'));
    for (const orderId of ['first', 'retried']) {
      const stored = await stack.dynamo.send(
        new GetItemCommand({ TableName: ordersTable, Key: { customerId: { S: 'large' }, orderId: { S: orderId } }, ConsistentRead: true }),
      );
      const fields = await entryFields(cache, cache.resolve('orders', key(orderId)));
      assert.ok(stored.Item !== undefined && fields.d !== undefined, `${orderId}: stored and cached`);
      assert.equal(fields.g, itemDigest(stored.Item), `${orderId}: the entry's digest is the stored item's`);
      const data = encodeEntry(stored.Item, '_version');
      assert.ok(
        fields.d.endsWith(data) && fields.d.length === ENTRY_TAG_LENGTH + data.length,
        `${orderId}: the entry is the stored item's`,
      );
      assert.equal((await cache.get('orders', key(orderId))).cache, 'hit');
    }
  });

  test('G2: an out-of-band change of content under the same version reaches readers within the stream lag', async () => {
    await cache.put('users', { userId: 'same-version', v: 'library' });
    await applied('same-version', 1);
    assert.equal((await cache.get('users', { userId: 'same-version' })).cache, 'hit');
    await stack.dynamo.send(
      new PutItemCommand({
        TableName: usersTable(),
        Item: { userId: { S: 'same-version' }, v: { S: 'elsewhere' }, _version: { N: '1' } },
      }),
    );
    await eventually('the reader sees the out-of-band content', async () => {
      return (await cache.get('users', { userId: 'same-version' })).item?.v === 'elsewhere';
    });
  });

  test('G2: a delete and re-create that resets the version reaches readers; the library’s own re-create is kept', async () => {
    // Out of band: the item at version 2 is deleted and re-created at version 1.
    await cache.put('users', { userId: 'reset', v: 'one' });
    await cache.put('users', { userId: 'reset', v: 'two' });
    await applied('reset', 2);
    await stack.dynamo.send(new DeleteItemCommand({ TableName: usersTable(), Key: { userId: { S: 'reset' } } }));
    await stack.dynamo.send(
      new PutItemCommand({ TableName: usersTable(), Item: { userId: { S: 'reset' }, v: { S: 'again' }, _version: { N: '1' } } }),
    );
    await eventually('the reader sees the re-created item', async () => {
      const r = await cache.get('users', { userId: 'reset' });
      return r.item?.v === 'again' && r.version === 1;
    });
    // Through the library: deleted, then put again (its version restarts at 1, as the first put's did).
    await cache.put('users', { userId: 'reset-own', v: 'first' });
    await cache.delete('users', { userId: 'reset-own' });
    await cache.put('users', { userId: 'reset-own', v: 'second' });
    await eventually(
      'all three records are applied',
      async () => seen.filter((r) => r.dynamodb?.Keys?.userId?.S === 'reset-own').length >= 3,
    );
    const r = await cache.get('users', { userId: 'reset-own' });
    assert.equal(r.item?.v, 'second', 'the first put’s record (version 1 too) did not keep anything older');
    assert.equal(r.version, 1);
  });

  test('a reader that meets a writer’s fence waits for the writer’s store and hits, without a DynamoDB read', async () => {
    // Prepare: a writer held between its begin and its DynamoDB write; a reader that counts.
    const gate = new Gate();
    const writer = stack.cache({}, { hooks: { beforeCommit: () => gate.hold() } });
    const counting = faultyDynamoClient();
    let waits = 0;
    const reader = stack.cache({ CACHE_LEASE_MS: '10000' }, { dynamoClient: counting.client, hooks: { fenceWait: () => void waits++ } });
    await cache.put('users', { userId: 'fenced', v: 'old' });
    // That put's record, applied during the held write, would restamp the entry and make the writer
    // drop instead of store (it cannot tell that record from an out-of-band change): applied first.
    await applied('fenced', 1);
    // Warm containers: their nodes verified, so they trust the node's entries.
    assert.equal((await reader.get('users', { userId: 'fenced' })).item?.v, 'old');
    await writer.get('users', { userId: 'fenced' });
    counting.calls.length = 0;
    const writing = writer.put('users', { userId: 'fenced', v: 'new' });
    await gate.reached;
    // Act: the reader finds the fence, and waits; the writer goes on.
    const reading = reader.get('users', { userId: 'fenced' });
    await eventually('the reader waits on the fence', async () => waits > 0);
    gate.open();
    await writing;
    const r = await reading;
    // Assess
    assert.equal(r.cache, 'hit');
    assert.equal(r.item?.v, 'new');
    assert.equal(counting.calls.filter((c) => c === 'GetItemCommand').length, 0);
  });

  // --- records handed to the consumer by hand (the orders table is not fed) -----------------------

  const order = (orderId: string) => ({ customerId: 'c', orderId });
  const orderKeys = (orderId: string) => ({ customerId: { S: 'c' }, orderId: { S: orderId } });

  /** The item as DynamoDB holds it now: what a NEW_IMAGE record of its last change carries. */
  async function image(orderId: string): Promise<Record<string, AttributeValue>> {
    const out = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}orders`, Key: orderKeys(orderId), ConsistentRead: true }),
    );
    assert.ok(out.Item);
    return out.Item;
  }

  function record(orderId: string, seq: string, newImage?: Record<string, AttributeValue>, eventName = 'MODIFY') {
    const rk = cache.resolve('orders', order(orderId));
    return { ...streamRecord(cache, rk, seq, newImage || eventName === 'REMOVE' ? 'NEW_IMAGE' : 'KEYS_ONLY', newImage), eventName };
  }

  test('repeated and out-of-order records stay harmless: a late record of an older state invalidates, the current one keeps', async () => {
    await cache.put('orders', { ...order('ooo'), total: 1 });
    const first = await image('ooo');
    await cache.put('orders', { ...order('ooo'), total: 2 });
    const second = await image('ooo');
    // The current state's record, twice: the entry stays.
    assert.deepEqual(await consume(batch(record('ooo', '10', second) as DynamoDBRecord, record('ooo', '11', second) as DynamoDBRecord)), {
      batchItemFailures: [],
    });
    let before = gets();
    assert.equal((await cache.get('orders', order('ooo'))).cache, 'hit');
    assert.equal(gets(), before);
    // The older state's record, late: it does not match, so the entry goes, and the read is current.
    await consume(batch(record('ooo', '9', first) as DynamoDBRecord));
    before = gets();
    const r = await cache.get('orders', order('ooo'));
    assert.equal(r.cache, 'miss');
    assert.equal(r.item?.total, 2);
    assert.equal(gets() - before, 1);
  });

  test('the same version with other content, or a deletion of an item held as present, invalidates; canonical spellings match', async () => {
    await cache.put('orders', { ...order('cmp'), total: 5, note: 'x' });
    const held = await image('cmp');
    // Another spelling of the same item: attributes in another order, 5 as 5.0, the version as 1.
    const respelled: Record<string, AttributeValue> = {
      note: { S: 'x' },
      _version: { N: '1.0' },
      total: { N: '5.0' },
      orderId: { S: 'cmp' },
      customerId: { S: 'c' },
    };
    await consume(batch(record('cmp', '20', respelled) as DynamoDBRecord));
    assert.equal((await cache.get('orders', order('cmp'))).cache, 'hit', 'one item, spelled otherwise');
    await consume(batch(record('cmp', '21', { ...held, note: { S: 'y' } }) as DynamoDBRecord));
    assert.equal((await cache.get('orders', order('cmp'))).cache, 'miss', 'same version, other content');
    assert.equal((await cache.get('orders', order('cmp'))).cache, 'hit');
    await consume(batch(record('cmp', '22', undefined, 'REMOVE') as DynamoDBRecord));
    assert.equal((await cache.get('orders', order('cmp'))).cache, 'miss', 'a deletion of an item held as present');
  });

  test('KEYS_ONLY keeps today’s behaviour: every record invalidates, a REMOVE of an item held as absent included', async () => {
    await cache.put('orders', { ...order('keys'), total: 1 });
    await consume(batch(record('keys', '30') as DynamoDBRecord));
    assert.equal((await cache.get('orders', order('keys'))).cache, 'miss');
    await cache.delete('orders', order('keys'));
    const rm = { ...record('keys', '31'), eventName: 'REMOVE' };
    rm.dynamodb = { ...rm.dynamodb, StreamViewType: 'KEYS_ONLY' };
    await consume(batch(rm as DynamoDBRecord));
    assert.equal((await cache.get('orders', order('keys'))).cache, 'miss');
    // With new images, the same REMOVE leaves the not-found entry alone.
    await consume(batch(record('keys', '32', undefined, 'REMOVE') as DynamoDBRecord));
    assert.equal((await cache.get('orders', order('keys'))).cache, 'hit');
  });

  test('the replayer follows the same rule; a parked item holds a version and a digest, never item values', async () => {
    // Prepare: two orders cached; one changed out of band under the same version.
    await cache.put('orders', { ...order('park-same'), secret: 'kept-value' });
    await cache.put('orders', { ...order('park-changed'), secret: 'old-value' });
    await stack.dynamo.send(
      new PutItemCommand({
        TableName: `${stack.prefix}orders`,
        Item: { ...orderKeys('park-changed'), secret: { S: 'new-value' }, _version: { N: '1' } },
      }),
    );
    const parkingTable = stack.parkingTable as string;
    for (const id of ['park-same', 'park-changed']) {
      const rk = cache.resolve('orders', order(id));
      await parkInvalidation(cache, parkingTable, {
        eventID: `parked-${id}`,
        rk,
        physicalTable: `${stack.prefix}orders`,
        keys: orderKeys(id),
        recorded: recordedState(rk.table, { eventName: 'MODIFY', dynamodb: { StreamViewType: 'NEW_IMAGE', NewImage: await image(id) } }),
        node: 'n',
        reason: 'test',
      });
    }
    const items = (await stack.dynamo.send(new ScanCommand({ TableName: parkingTable, ConsistentRead: true }))).Items ?? [];
    const ours = items.filter((i) => i.id?.S?.startsWith('parked-park-'));
    assert.equal(ours.length, 2);
    for (const i of ours) {
      assert.match(i.recorded?.S ?? '', /^1:[A-Za-z0-9+/]{22}$/);
      assert.ok(!JSON.stringify(i).includes('-value'), 'no item value is parked');
    }
    // Act: the replayer, fed the parking table's records.
    const replay = createReplayHandler(stack.cache());
    await replay(batch(...ours.map((i) => ({ eventName: 'INSERT', dynamodb: { NewImage: i } }) as unknown as DynamoDBRecord)));
    // Assess
    const before = gets();
    const same = await cache.get('orders', order('park-same'));
    assert.equal(same.cache, 'hit');
    assert.equal(gets(), before);
    const changed = await cache.get('orders', order('park-changed'));
    assert.equal(changed.cache, 'miss');
    assert.equal(changed.item?.secret, 'new-value');
    assert.deepEqual(Object.keys(await entryFields(cache, cache.resolve('orders', order('park-same')))).sort(), ['d', 'g', 'v', 'w']);
  });
});
