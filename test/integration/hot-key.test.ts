/** G5: many concurrent misses on one key cost one DynamoDB read, not one per caller. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Gate, startStack, type TestStack } from '../helpers/stack.ts';
import { entryFields, faultyDynamoClient } from '../helpers/faults.ts';
import type { ItemCache } from '../../lib/item-cache.ts';

describe('G5: one filler per hot key', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => stack.stop());

  test('100 concurrent misses from 10 separate containers cause at most 2 DynamoDB reads', async () => {
    const { client, calls } = faultyDynamoClient(); // counts every DynamoDB request
    const containers: ItemCache[] = Array.from({ length: 10 }, () => stack.cache({}, { dynamoClient: client }));
    const key = { userId: 'hot' };
    await containers[0]!.put('users', { ...key, v: 'x' });
    const rk = containers[0]!.resolve('users', key);
    for (let round = 0; round < 3; round++) {
      await containers[0]!.nodeFor(rk)!.client.del(rk.redisKey); // cold again (invalidated or evicted)
      calls.length = 0;
      const results = await Promise.all(containers.flatMap((c) => Array.from({ length: 10 }, () => c.get('users', key))));
      assert.ok(results.every((r) => r.item?.v === 'x'));
      const reads = calls.filter((c) => c === 'GetItemCommand').length;
      assert.ok(reads >= 1 && reads <= 2, `round ${round}: ${reads} DynamoDB reads for 100 concurrent misses`);
    }
  });

  test('right after a write invalidates a hot key, concurrent readers share one refill', async () => {
    const { client, calls } = faultyDynamoClient();
    const containers: ItemCache[] = Array.from({ length: 5 }, () => stack.cache({}, { dynamoClient: client }));
    const key = { userId: 'hot2' };
    await containers[0]!.put('users', { ...key, v: 0 });
    // A write by another writer in flight (W2 held) makes W1's end invalidate instead of fill.
    await containers[1]!.update('users', key, { set: { v: 1 } });
    const rk = containers[0]!.resolve('users', key);
    await containers[0]!.nodeFor(rk)!.client.hdel(rk.redisKey, 'd');
    calls.length = 0;
    const results = await Promise.all(containers.flatMap((c) => Array.from({ length: 20 }, () => c.get('users', key))));
    assert.ok(results.every((r) => r.item?.v === 1));
    assert.ok(calls.filter((c) => c === 'GetItemCommand').length <= 2);
  });

  // Without the release the waiter sits out the 60 s lease, and the test's 20 s bound fails it.
  test('a filler whose DynamoDB read fails gives its lease back: the reader waiting on it reads at once', { timeout: 20_000 }, async () => {
    const failing = faultyDynamoClient();
    const gate = new Gate();
    // CACHE_LEASE_MS long enough that a waiter sitting out the lease would still be waiting when checked.
    const filler = stack.cache({ CACHE_LEASE_MS: '60000' }, { dynamoClient: failing.client, hooks: { afterLease: () => gate.hold() } });
    const waits: string[] = [];
    const waiter = stack.cache({ CACHE_LEASE_MS: '60000' }, { hooks: { leaseWait: (k) => void waits.push(k) } });
    const key = { userId: 'failed-filler' };
    await waiter.put('users', { ...key, v: 'kept' });
    const rk = waiter.resolve('users', key);
    await waiter.nodeFor(rk)!.client.hdel(rk.redisKey, 'd');

    failing.faults.before.push('GetItemCommand');
    const failed = filler.get('users', key).then(
      () => 'served',
      (err: Error) => err.name,
    );
    await gate.reached; // the filler holds the lease
    assert.ok((await entryFields(waiter, rk)).l, 'the filler holds a lease');
    const read = waiter.get('users', key);
    while (waits.length === 0) await new Promise((r) => setTimeout(r, 5));
    gate.open();
    assert.notEqual(await failed, 'served', "the filler's read failed");
    const r = await read;
    assert.equal(r.item?.v, 'kept');
    assert.equal(r.cache, 'miss', 'the waiter took the released lease and read DynamoDB itself');
    assert.equal((await entryFields(waiter, rk)).d !== undefined, true, "the waiter's fill is cached");
  });

  // Without the bound the waiter waits on the second lease (60 s), and the test's 20 s bound fails it.
  test('a reader waits for one filler only: when the lease passes to another reader, it reads DynamoDB itself', {
    timeout: 20_000,
  }, async () => {
    const gate = new Gate();
    const filler = stack.cache({ CACHE_LEASE_MS: '60000' }, { hooks: { afterLease: () => gate.hold() } });
    const waits: string[] = [];
    const waiter = stack.cache({ CACHE_LEASE_MS: '60000' }, { hooks: { leaseWait: (k) => void waits.push(k) } });
    const key = { userId: 'second-filler' };
    await waiter.put('users', { ...key, v: 'one' });
    const rk = waiter.resolve('users', key);
    const redis = waiter.nodeFor(rk)!.client;
    await redis.hdel(rk.redisKey, 'd');

    const held = filler.get('users', key);
    await gate.reached; // the first filler holds the lease and is "reading DynamoDB"
    const read = waiter.get('users', key);
    while (waits.length === 0) await new Promise((r) => setTimeout(r, 5));
    // The first lease gives way to a second reader's (as after an invalidation and a new miss), in one step.
    const { lt } = await entryFields(waiter, rk);
    await redis.hset(rk.redisKey, 'l', 'another-readers-token', 'lt', String(Number(lt) + 1));
    const r = await read; // while both fillers still hold on
    assert.equal(r.item?.v, 'one');
    assert.equal(r.cache, 'miss');
    assert.equal((await entryFields(waiter, rk)).l, 'another-readers-token', 'the waiter neither took nor released the lease');
    assert.equal((await entryFields(waiter, rk)).d, undefined, 'the waiter filled nothing');
    gate.open();
    await held;
  });
});
