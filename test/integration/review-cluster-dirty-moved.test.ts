/**
 * Outside review of cluster mode (CACHE_MODE=cluster), the dirty-key repair (R6, `available`) after a
 * slot moved: ARCHITECTURE.md, "Cluster mode", says a dirty key "is delivered to the primary that held
 * it; a key that moved away answers with a redirect and counts as delivered (its entry went with its old
 * epoch's tag)". The tag is only untrusted while the entry is away: when the slot comes back to the
 * primary that tagged it, the entry the repair skipped is trusted and served again, although the
 * writer's repair "landed" (its dirty set is empty and the node is up).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, keyBesideSeal, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';
import { slotOf } from '../../lib/cache/slots.ts';

describe('review: cluster mode, a dirty key whose slot moved away and back', () => {
  const { cluster, container, until, addUser, migrate } = useClusterFixture({ replicas: 0 });

  test('G1, available: a dirty key repaired by a redirect while its slot was away is served stale once the slot is back', async () => {
    // The writer connects as its own user, so that A can refuse it alone (a writer that cannot reach A
    // while the readers can: R6). Every node grants it everything.
    const url = await addUser('writer', 'pw');
    const writer = container({ CACHE_NODES: url, CACHE_ALLOW_PLAIN_AUTH: '1', CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, c] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const key = await keyBesideSeal(writer, a, 'dirty-moved');
    const rk = writer.resolve('orders', key).redisKey;
    const slot = slotOf(rk);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit');

    // A refuses the writer's scripts: its begin fails, the write commits, the key is dirty for A.
    await call(a, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await writer.put('orders', { ...key, n: 2 });
    const nodeA = () => writer.health().find((h) => h.address.endsWith(`:${a.port}`));
    assert.equal(nodeA()?.dirtyKeys, 1, `the key is dirty for A: ${JSON.stringify(writer.health())}`);

    // The slot moves to C (the entry of n=1 with it), then A lets the writer in again: its repair of
    // the key gets MOVED and counts as delivered.
    await migrate(slot, [rk], a, c);
    await call(a, 'ACL', 'SETUSER', 'writer', '+@all');
    await until('the writer repaired A', async () => {
      await writer.checkHealth();
      return nodeA()?.status === 'up' && nodeA()?.dirtyKeys === 0;
    });

    // The slot comes back to A, the entry of n=1 with it, still tagged with A's epoch.
    await migrate(slot, [rk], c, a);
    const r = await reader.get('orders', key);
    assert.equal(r.item?.n, 2, `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged and its repair landed`);
  });
});
