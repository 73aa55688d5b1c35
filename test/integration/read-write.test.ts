import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { plantEntry } from '../helpers/faults.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { ItemNotFoundError, NumberValue, ValidationError, VersionMismatchError } from '../../lib/index.ts';

describe('reads and writes through the cache', () => {
  let stack: TestStack;
  let cache: ItemCache;
  before(async () => {
    stack = await startStack();
    cache = stack.cache();
  });
  after(async () => stack.stop());

  test('a miss fills, the next read is a hit with the same item and version', async () => {
    await cache.put('users', { userId: 'u1', name: 'Ada', n: 1 });
    // The write stored its own item: the first read is already a hit.
    const first = await cache.get('users', { userId: 'u1' });
    assert.equal(first.cache, 'hit');
    assert.deepEqual(first.item, { userId: 'u1', name: 'Ada', n: 1 });
    assert.equal(first.version, 1);
    const node = cache.nodeFor(cache.resolve('users', { userId: 'u1' }))!;
    await node.client.del(cache.resolve('users', { userId: 'u1' }).redisKey);
    const miss = await cache.get('users', { userId: 'u1' });
    assert.equal(miss.cache, 'miss');
    assert.deepEqual(miss.item, first.item);
    const hit = await cache.get('users', { userId: 'u1' });
    assert.equal(hit.cache, 'hit');
    assert.deepEqual(hit.item, first.item);
    assert.equal(hit.version, 1);
  });

  test('R8: not-found is cached under the same rules and a put replaces it', async () => {
    const a = await cache.get('users', { userId: 'nobody' });
    assert.equal(a.item, undefined);
    assert.equal(a.cache, 'miss');
    const b = await cache.get('users', { userId: 'nobody' });
    assert.equal(b.item, undefined);
    assert.equal(b.cache, 'hit');
    await cache.put('users', { userId: 'nobody', name: 'now somebody' });
    const c = await cache.get('users', { userId: 'nobody' });
    assert.deepEqual(c.item, { userId: 'nobody', name: 'now somebody' });
    await cache.delete('users', { userId: 'nobody' });
    const d = await cache.get('users', { userId: 'nobody' });
    assert.equal(d.item, undefined);
  });

  test('every write increments the version in DynamoDB; update sets and removes', async () => {
    const key = { customerId: 'c1', orderId: 'o1' };
    const p = await cache.put('orders', { ...key, total: 10, note: 'x' });
    assert.equal(p.version, 1);
    const p2 = await cache.put('orders', { ...key, total: 11, note: 'y' });
    assert.equal(p2.version, 2);
    const u = await cache.update('orders', key, { set: { total: 12 }, remove: ['note'] });
    assert.equal(u.version, 3);
    assert.deepEqual(u.item, { ...key, total: 12 });
    const r = await cache.get('orders', key);
    assert.deepEqual(r.item, { ...key, total: 12 });
    assert.equal(r.version, 3);
    const raw = await stack.dynamo.send(
      new GetItemCommand({
        TableName: `${stack.prefix}orders`,
        Key: { customerId: { S: 'c1' }, orderId: { S: 'o1' } },
        ConsistentRead: true,
      }),
    );
    assert.equal(raw.Item?._version?.N, '3');
  });

  test('ifVersion: a stale version is refused with nothing written', async () => {
    const key = { userId: 'v1' };
    await cache.put('users', { ...key, a: 1 });
    await cache.put('users', { ...key, a: 2 }, { ifVersion: 1 });
    await assert.rejects(cache.put('users', { ...key, a: 3 }, { ifVersion: 1 }), VersionMismatchError);
    await assert.rejects(cache.update('users', key, { set: { a: 4 } }, { ifVersion: 1 }), VersionMismatchError);
    await assert.rejects(cache.delete('users', key, { ifVersion: 1 }), VersionMismatchError);
    const r = await cache.get('users', key);
    assert.deepEqual(r.item, { ...key, a: 2 });
    assert.equal(r.version, 2);
  });

  test('update of a missing item is ItemNotFoundError and caches nothing wrong', async () => {
    await assert.rejects(cache.update('users', { userId: 'ghost' }, { set: { a: 1 } }), ItemNotFoundError);
    const r = await cache.get('users', { userId: 'ghost' });
    assert.equal(r.item, undefined);
  });

  test('a put is versioned against an item written out of band (no version attribute)', async () => {
    await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}users`, Item: { userId: { S: 'oob' }, a: { N: '1' } } }));
    const w = await cache.put('users', { userId: 'oob', a: 2 });
    assert.equal(w.version, 1);
    const r = await cache.get('users', { userId: 'oob' });
    assert.deepEqual(r.item, { userId: 'oob', a: 2 });
  });

  test('numbers keep their exact value; keys 1, 1.0 and 1e0 are one item', async () => {
    const big = new NumberValue('12345678901234567890.123456789');
    await cache.put('readings', { sensorId: 's', ts: 1, v: big, small: 0.1 });
    const a = await cache.get('readings', { sensorId: 's', ts: new NumberValue('1.0') });
    assert.deepEqual(a.item, { sensorId: 's', ts: 1, v: big, small: 0.1 });
    const b = await cache.get('readings', { sensorId: 's', ts: new NumberValue('1e0') });
    assert.equal(b.cache, 'hit');
    assert.equal(a.item?.v instanceof NumberValue, true);
  });

  test('bad input is a ValidationError naming the field, before any I/O', async () => {
    await assert.rejects(cache.get('users', { userId: 5 }), (e: unknown) => e instanceof ValidationError && e.field === 'key.userId');
    await assert.rejects(
      cache.get('readings', { sensorId: 's', ts: 'x' }),
      (e: unknown) => e instanceof ValidationError && e.field === 'key.ts',
    );
    await assert.rejects(
      cache.put('users', { userId: 'x', _version: 3 }),
      (e: unknown) => e instanceof ValidationError && e.field === 'item._version',
    );
    await assert.rejects(
      cache.update('users', { userId: 'x' }, { set: { userId: 'y' } }),
      (e: unknown) => e instanceof ValidationError && e.field === 'set.userId',
    );
    await assert.rejects(cache.put('users', { userId: 'x', bad: Number.NaN }), ValidationError);
    await assert.rejects(cache.get('nope', { id: 1 }), /unknown table/);
  });

  test('batch get: hits, misses and missing keys in one call', async () => {
    await cache.put('users', { userId: 'b1', n: 1 });
    await cache.put('users', { userId: 'b2', n: 2 });
    const keys = [{ userId: 'b1' }, { userId: 'b2' }, { userId: 'b3' }, { userId: 'b1' }];
    const r = await cache.batchGet('users', keys);
    assert.equal(r.items.length, 3);
    assert.deepEqual(r.missing, [{ userId: 'b3' }]);
    const again = await cache.batchGet('users', keys);
    assert.deepEqual(again.sources, ['hit', 'hit', 'hit', 'hit']);
    assert.deepEqual(again.items, r.items);
  });
});

describe('a faulty or tampered node', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  test('an entry that does not decode is dropped and the item served from DynamoDB', async () => {
    const cache = stack.cache();
    await cache.put('users', { userId: 'garbled', v: 1 });
    await cache.put('users', { userId: 'fine', v: 2 });
    const rk = cache.resolve('users', { userId: 'garbled' });
    await plantEntry(cache, rk, '{"userId":{"S":"garbled"},"v":');
    const r = await cache.get('users', { userId: 'garbled' });
    assert.equal(r.item?.v, 1);
    assert.equal(r.cache, 'bypass');
    assert.equal(await cache.nodeFor(rk)!.client.hget(rk.redisKey, 'd'), null, 'the bad entry was dropped');
    await plantEntry(cache, rk, 'not json at all');
    const batch = await cache.batchGet('users', [{ userId: 'garbled' }, { userId: 'fine' }]);
    assert.deepEqual(batch.items, [
      { userId: 'garbled', v: 1 },
      { userId: 'fine', v: 2 },
    ]);
    assert.deepEqual(batch.sources, ['bypass', 'hit']);
  });
});
