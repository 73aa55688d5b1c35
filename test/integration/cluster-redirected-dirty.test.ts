/**
 * Cluster mode, R6 under `available`: a write's begin that meets a redirect (the writer's topology is
 * older than a slot migration) and then fails on the node the redirect names leaves its key dirty
 * there, where the key lives, not on the node that redirected it (which stays up and would never
 * repair it). Found while fixing the review's dirty-key finding (review-cluster-dirty-moved.test.ts):
 * the same rule, a dirty key is owed to the node that holds the key (protocol.ts followingRedirect).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, keyBesideSeal, relearn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';
import { slotOf } from '../../lib/cache/slots.ts';

describe('cluster mode, a write whose begin failed where a redirect led', () => {
  const { cluster, container, until, addUser, migrate } = useClusterFixture({ replicas: 0 });

  test('G1, available: the key is repaired on the node the redirect named, and no read after the repair is stale', async () => {
    const url = await addUser('writer', 'pw');
    // A long check interval: the writer keeps the topology it learnt until a redirect tells it otherwise.
    const writer = container({
      CACHE_NODES: url,
      CACHE_ALLOW_PLAIN_AUTH: '1',
      CACHE_WRITE_POLICY: 'available',
      CACHE_CHECK_INTERVAL_SECONDS: '60',
    });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, c] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const key = await keyBesideSeal(writer, a, 'begin-moved');
    const rk = writer.resolve('orders', key).redisKey;
    const slot = slotOf(rk);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit');

    // The slot moves to C (the entry of n=1 with it); the writer still routes the key to A. C refuses
    // the writer's scripts: the begin is redirected there and fails, the write commits (available).
    await migrate(slot, [rk], a, c);
    await call(c, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await writer.put('orders', { ...key, n: 2 });
    await call(c, 'ACL', 'SETUSER', 'writer', '+@all');

    // The writer repairs what it owes: every node it knows up, and no key left dirty anywhere.
    await until('the writer owes nothing', async () => {
      for (const n of writer.shards.nodes) if (n.status === 'down') await n.probe();
      return writer.health().every((h) => h.status !== 'down' && h.dirtyKeys === 0);
    });

    // The slot comes back to A, the entry of n=1 with it, still tagged with A's epoch.
    await migrate(slot, [rk], c, a);
    await relearn(reader);
    const r = await reader.get('orders', key);
    assert.equal(r.item?.n, 2, `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged and its repair landed`);
  });
});
