/**
 * Re-review of cluster mode's fixes (CONSISTENCY.md, "Adversarial review of cluster mode", second
 * round): the unowned-slot fix parks a key's stream invalidation while its slot has no owner and
 * replays it once the slot has one. But the entry to repair is not on the slot's next owner:
 * `CLUSTER DELSLOTS` leaves the keys on the old owner A, which can no longer be sent them (it does not
 * own the slot). When the slot is assigned to another primary B (`ADDSLOTS` there: an operator's fix),
 * the replayed invalidation reached B, which never held the key, and counted as applied; when the slot
 * later went back to A (a resharding; B has no key of it to migrate), A's entry of before, tagged with
 * A's unchanged epoch, was served: older than an acknowledged write (G1, available) and than a stream
 * record already applied (G2).
 *
 * The rule (ARCHITECTURE.md, "A slot with no owner"): an invalidation counts only once no other primary
 * holds keys of the key's slot that it cannot be sent (protocol.ts `invalidateStray`), so the record
 * stays parked while A holds them, and the sweep's retry once the slot is back on A deletes the entry.
 *
 * The stream consumer's, replayer's and sweep's invalidation is `ItemCache.invalidate` (lib/stream/);
 * the test calls it directly: while the slot has no owner (it throws: the record is parked), once B
 * owns it (it throws still: A holds the slot's keys), then once the slot is back on A (it succeeds).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { slotOf } from '../../lib/cache/slots.ts';
import { call, keyBesideSeal, relearn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';

describe('re-review: cluster mode, a parked invalidation of a key whose slot changed owner while unowned', () => {
  const { cluster, container, reshard, ownerEverywhere } = useClusterFixture({ replicas: 0 });

  test("G1/G2, available: the record stays parked while the old owner holds the slot's keys, and repairs it once the slot is back there", async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    // A replayer that learnt the topology before the slot was taken and not since: its invalidation
    // goes to A, whose MOVED leads it to B.
    const replayer = container({ CACHE_WRITE_POLICY: 'available' });
    await Promise.all([warm(writer), warm(reader), warm(replayer)]);
    const [a, b] = [cluster.primaries[0]!, cluster.primaries[1]!];
    // A key of A not in A's lowest slot (where A's epoch's seal lives).
    const key = await keyBesideSeal(writer, a, 'replay');
    const rk = writer.resolve('orders', key);
    const slot = slotOf(rk.redisKey);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit', 'the reader hits n=1 on A');

    // The slot is unassigned on every node; A keeps its keys (DELSLOTS deletes none).
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'DELSLOTS', slot);
    await relearn(writer);
    await relearn(reader);
    assert.equal(writer.nodeFor(rk), undefined, 'the writer knows no owner for the slot');

    // available: committed, logged CACHE_DIRTY_DATA; its stream record cannot be applied: parked.
    await writer.put('orders', { ...key, n: 2 });
    await assert.rejects(writer.invalidate(rk), 'the invalidation of an unowned key throws (the record is parked)');
    assert.equal(Number(await call(a, 'CLUSTER', 'COUNTKEYSINSLOT', slot)), 1, "A still holds the key's hash");

    // The operator gives the slot to B; the replayer's next try reaches B and succeeds.
    await call(b, 'CLUSTER', 'ADDSLOTS', slot);
    await ownerEverywhere(slot, b);
    await relearn(writer);
    assert.ok(writer.nodeFor(rk)?.id.endsWith(`:${b.port}`), 'the writer routes the key to B');
    // A still holds keys of the slot, which it does not own: the record stays parked.
    await assert.rejects(writer.invalidate(rk), /holds keys of slot/, 'the invalidation waits for the keys A holds');
    assert.equal(Number(await call(b, 'EXISTS', rk.redisKey)), 0, 'B never held the key');
    assert.ok(replayer.nodeFor(rk)?.id.endsWith(`:${a.port}`), 'the replayer still routes the key to A');
    await assert.rejects(replayer.invalidate(rk), /holds keys of slot/, 'the node that redirected it is checked too');

    // Later the slot is resharded back to A, the usual procedure (B has no entry of the key to migrate;
    // its epoch's seal may have moved into the slot, its lowest now, and goes with it).
    await reshard(slot, b, a);
    await relearn(reader);
    // The sweep's next try reaches A, which owns the slot again: applied, the parked record deleted.
    await relearn(writer);
    await writer.invalidate(rk);

    const r = await reader.get('orders', key);
    assert.equal(
      r.item?.n,
      2,
      `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged and its stream record applied`,
    );
  });
});
