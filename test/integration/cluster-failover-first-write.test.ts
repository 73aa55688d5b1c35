/**
 * Cluster mode, strict: the first write after a failover the container has not learnt yet. Its node
 * for the key is the old primary, down (killed), and the promoted replica answers. Strict's contract
 * is to refuse only when the key's node cannot be reached (README, "Cluster mode, per target"): the
 * write asks the topology before it refuses (protocol.ts beginWrite, node.ts ownerAfterRelearn) and
 * goes to the promoted replica. Found by the 10-minute cluster run of 2026-11-26 (CONSISTENCY.md):
 * 13 strict refusals 0.5–0.8 s after a failover's new primary answered, each naming the old one.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, info, keyOn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';

describe('cluster mode: the first strict write after an unlearnt failover', () => {
  const { cluster, container, until } = useClusterFixture({ replicas: 1, nodeTimeoutMs: 5000 });

  test('G3, strict: a write whose node was failed over goes to the promoted replica, not refused', async () => {
    // Prepare: the seed stays up; a key on the first primary, its replica linked (strict waits for it).
    const writer = container({ CACHE_NODES: cluster.primaries[1]!.url, CACHE_WRITE_POLICY: 'strict' });
    await warm(writer);
    const primary = cluster.primaries[0]!;
    const replica = cluster.replicas[0]!;
    const key = await keyOn(writer, primary, 'failover-first');
    await call(primary, 'WAIT', 1, 5000);
    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await writer.get('orders', key)).item?.n, 1);

    // The key's primary dies; its replica takes over; the container has not asked the topology since.
    await primary.kill();
    await call(replica, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    await until('the replica is a primary', async () => (await info(replica)).includes('role:master'));

    // Act: the first write after it.
    let outcome = 'accepted';
    try {
      await writer.put('orders', { ...key, n: 2 });
    } catch (err) {
      outcome = String(err);
    }

    // Assess: accepted, and read back from the new primary.
    assert.equal(
      outcome,
      'accepted',
      `the promoted replica answers, yet the write was refused; nodes: ${writer.shards.nodes.map((n) => n.address).join(', ')}`,
    );
    assert.equal((await writer.get('orders', key)).item?.n, 2);
  });
});
