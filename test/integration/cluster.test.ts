/** CACHE_MODE=cluster: the same protocol through ioredis's Cluster client (ElastiCache cluster mode / Serverless). */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import { streamRecord } from '../helpers/faults.ts';
import { invalidateStreamRecords } from '../../lib/index.ts';
import type { ItemCache } from '../../lib/item-cache.ts';

describe('cluster mode', () => {
  let stack: TestStack;
  let cluster: RedisCluster;
  let cache: ItemCache;
  before(async () => {
    stack = await startStack({ shards: 1 });
    cluster = await RedisServer.startCluster(3);
    cache = stack.cache({ CACHE_MODE: 'cluster', CACHE_NODES: cluster.urls[0]! });
  });
  after(async () => {
    await stack.stop();
    await cluster.stop();
  });

  test('reads fill and hit, writes invalidate and store, across slots on three primaries', async () => {
    const keys = Array.from({ length: 30 }, (_, i) => ({ customerId: `c${i}`, orderId: `o${i}` }));
    for (const k of keys) await cache.put('orders', { ...k, n: 1 });
    const first = await cache.batchGet('orders', keys);
    assert.equal(first.items.length, 30);
    assert.ok(first.sources.every((s) => s === 'hit'));
    await cache.update('orders', keys[3]!, { set: { n: 2 } });
    assert.equal((await cache.get('orders', keys[3]!)).item?.n, 2);
    await cache.delete('orders', keys[4]!);
    const r = await cache.get('orders', keys[4]!);
    assert.equal(r.item, undefined);
    // Entries really are spread over the primaries.
    const sizes = await Promise.all(cluster.servers.map((s) => s.dbsize()));
    assert.ok(sizes.filter((n) => n > 0).length >= 2, `entries per node: ${sizes.join(',')}`);
    assert.deepEqual(
      cache.health().map((h) => h.status),
      ['up'],
    );
  });

  test('stream invalidation and a miss-then-hit through the cluster', async () => {
    const key = { customerId: 'cs', orderId: 'os' };
    await cache.put('orders', { ...key, n: 1 });
    const rk = cache.resolve('orders', key);
    const res = await invalidateStreamRecords(cache, [streamRecord(cache, rk, '1')]);
    assert.deepEqual(res.batchItemFailures, []);
    assert.equal((await cache.get('orders', key)).cache, 'miss');
    assert.equal((await cache.get('orders', key)).cache, 'hit');
  });
});
