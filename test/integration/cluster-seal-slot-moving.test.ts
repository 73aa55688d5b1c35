/**
 * Cluster mode, strict: a verification whose epoch seal is in a slot on the move. Each primary's epoch
 * is sealed under the hash tag of its lowest slot (node.ts verifyEpoch); a migration of that slot (the
 * consistency run's `migrate` fault takes it) moves the seal key first, then the slot. A verification in
 * that time (the background one, every half check interval; a probe; a re-seal once the map shows the
 * slot gone) meets ASK, or MOVED while the container has not learnt the move yet. The node answers
 * and its epoch (INFO) is known: the verification settles the epoch locally instead of marking the
 * node down, so strict writes of its keys are not refused. Found by the 10-minute strict cluster run
 * of 15:12 UTC (CONSISTENCY.md): 2 refusals during and 1.3 s after a migrate, each an instant refusal
 * after a verification had failed.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, keyBesideSeal, useClusterFixture, warm, type SlotRanges, putOutcome } from '../helpers/cluster-fixture.ts';
import { deadlineClock } from '../../lib/clock.ts';

describe('cluster mode: the seal slot on the move', () => {
  const { cluster, container } = useClusterFixture({ replicas: 0 });

  test('G3, strict: a verification that meets ASK, then MOVED, for its seal leaves the node up; writes of its keys are accepted', async () => {
    // Prepare: a key on A outside A's lowest slot, written once (A sealed its epoch in the lowest slot).
    const writer = container({ CACHE_WRITE_POLICY: 'strict', CACHE_CHECK_INTERVAL_SECONDS: '60' });
    await warm(writer);
    const [a, b] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const lowest = Math.min(...((await call(a, 'CLUSTER', 'SLOTS')) as SlotRanges).filter((r) => r[2][1] === a.port).map((r) => r[0]));
    const key = await keyBesideSeal(writer, a, 'seal-moving');
    await writer.put('orders', { ...key, n: 1 });
    const node = writer.nodeFor(writer.resolve('orders', key))!;
    assert.ok(node.address.endsWith(`:${a.port}`));
    const sealKeys = (await call(a, 'CLUSTER', 'GETKEYSINSLOT', lowest, 100)) as string[];
    assert.ok(sealKeys.length > 0, "A's lowest slot holds its epoch's seal");

    // The slot migrating, its keys (the seal) moved already: A answers ASK for them. The container
    // verifies A then.
    const [aId, bId] = [String(await call(a, 'CLUSTER', 'MYID')), String(await call(b, 'CLUSTER', 'MYID'))];
    await call(b, 'CLUSTER', 'SETSLOT', lowest, 'IMPORTING', aId);
    await call(a, 'CLUSTER', 'SETSLOT', lowest, 'MIGRATING', bId);
    await call(a, 'MIGRATE', '127.0.0.1', b.port, '', 0, 5000, 'KEYS', ...sealKeys);
    await node.reverify(deadlineClock() + 2000);
    assert.equal(await putOutcome(writer, { ...key, n: 2 }), 'accepted', 'a write while the seal slot migrates');

    // The slot moved (SETSLOT NODE everywhere), not learnt by the container yet: A answers MOVED for the seal.
    for (const s of cluster.primaries) await call(s, 'CLUSTER', 'SETSLOT', lowest, 'NODE', bId);
    await node.reverify(deadlineClock() + 2000);
    assert.equal(await putOutcome(writer, { ...key, n: 3 }), 'accepted', 'a write once the seal slot moved');
    assert.equal((await writer.get('orders', key)).item?.n, 3);
  });
});
