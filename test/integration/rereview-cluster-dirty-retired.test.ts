/**
 * Re-review of cluster mode's fixes (CONSISTENCY.md, "Adversarial review of cluster mode", second round): a dirty key
 * (R6, `available`) whose slot moved away is, since the fix, delivered where the redirect names, or,
 * when that node C cannot take it, "one of that node's own dirty keys, repaired before it is trusted"
 * (ARCHITECTURE.md, "Topology and dirty keys"; node.ts `invalidateMoved`). But a node that owns no slot
 * any more is retired from the map with its dirty keys (cluster.ts `apply`: "nothing is owed to it"):
 * when C is failed over to its replica C' (which holds the key's entry, still tagged with the first
 * owner A's epoch), the owed invalidation is dropped, the writer's health shows no dirty key anywhere,
 * and when the slot is resharded back to A the entry of before is trusted again there and served, older
 * than the acknowledged write whose repair the writer never delivered (G1, available). The fix: a
 * retired node's dirty keys are handed to each key's current owner (ARCHITECTURE.md, "Topology and
 * dirty keys").
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { slotOf } from '../../lib/cache/slots.ts';
import { call, info, keyBesideSeal, relearn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';

describe('re-review: cluster mode, a dirty key handed to a node that is then retired', () => {
  const { cluster, container, until, addUser, reshard } = useClusterFixture({ replicas: 1, nodeTimeoutMs: 5000 });

  test("G1, available: the invalidation owed to the retired node goes to the slot's new owner, and the old entry is never served", async () => {
    // The writer connects as its own user, so that a node can refuse it alone (a writer that cannot
    // reach a node while the readers can: R6). Every node grants it everything.
    const url = await addUser('writer', 'pw');
    const writer = container({ CACHE_NODES: url, CACHE_ALLOW_PLAIN_AUTH: '1', CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, c, c2] = [cluster.primaries[0]!, cluster.primaries[1]!, cluster.replicas[1]!];
    assert.match(await info(c2), new RegExp(`master_port:${c.port}\\r`));
    const key = await keyBesideSeal(writer, a, 'retired');
    const rk = writer.resolve('orders', key).redisKey;
    const slot = slotOf(rk);
    const nodeAt = (port: number) => writer.health().find((h) => h.address.endsWith(`:${port}`));

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit', 'the reader hits n=1 on A');

    // A refuses the writer's scripts: its begin fails, the write commits, the key is dirty for A.
    await call(a, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await writer.put('orders', { ...key, n: 2 });
    assert.equal(nodeAt(a.port)?.dirtyKeys, 1, `the key is dirty for A: ${JSON.stringify(writer.health())}`);

    // The slot moves to C (the entry of n=1 with it, A's tag on it); C now refuses the writer, A lets it
    // in again: A's repair meets MOVED, C cannot take it, so the key is C's dirty key (the fix).
    await reshard(slot, a, c, [rk]);
    await call(c, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await call(a, 'ACL', 'SETUSER', 'writer', '+@all');
    await until('the writer repaired A, the key dirty for C', async () => {
      await writer.checkHealth();
      return nodeAt(a.port)?.status === 'up' && nodeAt(a.port)?.dirtyKeys === 0 && nodeAt(c.port)?.dirtyKeys === 1;
    });

    // C is failed over to its replica C' (which holds the entry of n=1, still tagged with A's epoch).
    await call(c2, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    await until(
      "C' primary, C its replica",
      async () => (await info(c2)).includes('role:master') && (await info(c)).includes('role:slave'),
    );
    await relearn(writer);
    const owed = writer.health().reduce((n, h) => n + h.dirtyKeys, 0);
    // C retired from the writer's map: the key it was owed is handed to the slot's owner now, C', and
    // delivered there before C' is trusted again (cluster.ts `apply`). Before the fix it was dropped,
    // so C' was up with nothing owed at once.
    await until("C' up, nothing owed to it", async () => {
      await writer.checkHealth();
      return nodeAt(c2.port)?.status === 'up' && nodeAt(c2.port)?.dirtyKeys === 0;
    });

    // The slot is resharded back to A, its entry with it: A's tag, A's unchanged epoch.
    await reshard(slot, c2, a, [rk]);
    await relearn(reader);
    const r = await reader.get('orders', key);
    assert.equal(
      r.item?.n,
      2,
      `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged; the writer owes ${owed} invalidation(s) after C was retired: ${JSON.stringify(writer.health())}`,
    );
  });
});
