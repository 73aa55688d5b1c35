/**
 * Outside review 6 of cluster mode: 686f34e's seal slot on the move, where INFO is refused (run_id
 * hidden, ARCHITECTURE.md "Cluster mode", epochs per primary). There the epoch is the data set's marker
 * (`__wt_epoch_id:{tag}`), which lives under the same hash tag as the seal, in the primary's lowest slot,
 * and leaves with it when a migration takes that slot. 686f34e lets a verification whose SEAL meets ASK
 * or MOVED go on (the node answered, its epoch is known), but the marker's `SET NX GET` comes first and
 * meets the same redirect: the verification fails, and the next strict write of any of the node's keys
 * is refused at once, with the node answering every command (G3: "a strict write is refused only while
 * its node does not answer"). The same steps as cluster-seal-slot-moving.test.ts, as a user without INFO.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, keyBesideSeal, useClusterFixture, warm, type SlotRanges, putOutcome } from '../helpers/cluster-fixture.ts';
import { deadlineClock } from '../../lib/clock.ts';

describe('review6: cluster mode, INFO refused, the marker and seal slot on the move', () => {
  const { cluster, container, addUser } = useClusterFixture({ replicas: 0 });

  test('G3, strict: a verification that meets ASK, then MOVED, for the marker leaves the node up; writes of its keys are accepted', async () => {
    const url = await addUser('noinfo6', 'secret', '-info');
    const writer = container({
      CACHE_NODES: url,
      CACHE_ALLOW_PLAIN_AUTH: '1',
      CACHE_WRITE_POLICY: 'strict',
      CACHE_CHECK_INTERVAL_SECONDS: '60',
    });
    await warm(writer);
    const [a, b] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const lowest = Math.min(...((await call(a, 'CLUSTER', 'SLOTS')) as SlotRanges).filter((r) => r[2][1] === a.port).map((r) => r[0]));
    const key = await keyBesideSeal(writer, a, 'marker-moving');
    await writer.put('orders', { ...key, n: 1 });
    const node = writer.nodeFor(writer.resolve('orders', key))!;
    assert.ok(node.address.endsWith(`:${a.port}`));
    const held = (await call(a, 'CLUSTER', 'GETKEYSINSLOT', lowest, 100)) as string[];
    assert.ok(
      held.some((k) => k.startsWith('__wt_epoch_id:')),
      `A's lowest slot holds its data set's marker: ${held.join(', ')}`,
    );

    // The slot migrating, its keys (marker and seal) moved already: A answers ASK for them.
    const [aId, bId] = [String(await call(a, 'CLUSTER', 'MYID')), String(await call(b, 'CLUSTER', 'MYID'))];
    await call(b, 'CLUSTER', 'SETSLOT', lowest, 'IMPORTING', aId);
    await call(a, 'CLUSTER', 'SETSLOT', lowest, 'MIGRATING', bId);
    await call(a, 'MIGRATE', '127.0.0.1', b.port, '', 0, 5000, 'KEYS', ...held);
    await node.reverify(deadlineClock() + 2000);
    assert.equal(await putOutcome(writer, { ...key, n: 2 }), 'accepted', 'a write while the marker slot migrates');

    // The slot moved, not learnt by the container yet: A answers MOVED for the marker.
    for (const s of cluster.primaries) await call(s, 'CLUSTER', 'SETSLOT', lowest, 'NODE', bId);
    await node.reverify(deadlineClock() + 2000);
    assert.equal(await putOutcome(writer, { ...key, n: 3 }), 'accepted', 'a write once the marker slot moved');
    assert.equal((await writer.get('orders', key)).item?.n, 3);
  });
});
