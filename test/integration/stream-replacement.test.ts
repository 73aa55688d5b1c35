/**
 * After a stream replacement (a table's stream view type changed), records written in between
 * reach no consumer: the deploy invalidates the table's entries (README, Deploy) by invoking the
 * sweep function with `invalidateTables`. Against real redis-servers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { CacheUnavailableError, UnknownTableError, ValidationError, type ItemCache } from '../../lib/index.ts';
import { createSweepHandler } from '../../functions/sweep.ts';

describe('invalidating a table’s entries after a stream replacement', () => {
  let stack: TestStack;
  let cache: ItemCache;
  before(async () => {
    stack = await startStack({ shards: 3, parking: true });
    cache = stack.cache();
  });
  after(async () => stack.stop());

  /** Changes an item in DynamoDB only, as a write whose stream record no consumer read. */
  async function writeAround(table: string, item: Record<string, { S: string }>): Promise<void> {
    await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}${table}`, Item: item }));
  }

  test('every entry of the named table, on every node, is invalidated; other tables keep theirs', async () => {
    // Prepare: users on every node, and an order, cached; then changed behind the cache's back.
    const users = stack.usersOnDistinctServers(cache, 'flush', 3).map((u) => u.key);
    const order = { customerId: 'c', orderId: 'o' };
    for (const k of users) await cache.put('users', { ...k, v: 'old' });
    await cache.put('orders', { ...order, v: 'old' });
    for (const k of users) await writeAround('users', { userId: { S: k.userId }, v: { S: 'new' } });
    await writeAround('orders', { customerId: { S: 'c' }, orderId: { S: 'o' }, v: { S: 'new' } });
    for (const k of users) assert.equal((await cache.get('users', k)).item?.v, 'old', 'the cache cannot know');
    // Act
    const flush = createSweepHandler(stack.cache());
    const res = await flush({ invalidateTables: ['users'] });
    // Assess
    assert.deepEqual(res, { entries: users.length });
    for (const k of users) assert.equal((await cache.get('users', k)).item?.v, 'new');
    const o = await cache.get('orders', order);
    assert.equal(o.cache, 'hit');
    assert.equal(o.item?.v, 'old', 'another table’s entries stay');
  });

  test('a name that is no table, or a node that cannot be reached, changes nothing', async () => {
    const key = { userId: 'flush-refused' };
    await cache.put('users', { ...key, v: 'old' });
    await writeAround('users', { userId: { S: key.userId }, v: { S: 'new' } });
    const flush = createSweepHandler(stack.cache());
    await assert.rejects(flush({ invalidateTables: ['users', 'nope'] }), UnknownTableError);
    await assert.rejects(flush({ invalidateTables: 'users' }), ValidationError);
    const away = stack.servers.find((s) => s !== stack.serverOf(cache, cache.resolve('users', key)))!;
    away.pause();
    try {
      await assert.rejects(createSweepHandler(stack.cache())({ invalidateTables: ['users'] }), CacheUnavailableError);
    } finally {
      away.resume();
    }
    assert.equal((await cache.get('users', key)).item?.v, 'old', 'nothing was invalidated');
  });
});
