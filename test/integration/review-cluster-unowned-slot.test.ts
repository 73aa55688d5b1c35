/**
 * Outside review of cluster mode (CACHE_MODE=cluster): a slot that the topology shows with no owner
 * (CLUSTER SLOTS leaves it out: a slot unassigned by an operator's DELSLOTS, a resharding that failed
 * half way, `redis-cli --cluster fix`) maps to no node, and `CacheProtocol.write` then takes the
 * cache-off path: the write is committed in DynamoDB with no fence and no invalidation, under `strict`
 * too. The entries the old owner holds for that slot keep their epoch's tag; when the slot is assigned
 * to it again they are served, older than the acknowledged write: G1 broken under `strict`, whose
 * promise is to refuse a write whose node cannot be invalidated (ARCHITECTURE.md, "How a write
 * travels", R6).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, keyBesideSeal, relearn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';
import { slotOf } from '../../lib/cache/slots.ts';

describe('review: cluster mode, a slot with no owner in the topology', () => {
  const { cluster, container, until } = useClusterFixture({ replicas: 0 });

  test('G1, strict: a write of a key whose slot has no owner is committed unfenced, and the old owner serves its old entry once the slot is back', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const a = cluster.primaries[0]!;
    // A key of A that is not in A's lowest slot (where A's epoch's seal lives).
    const key = await keyBesideSeal(writer, a, 'unowned');
    const slot = slotOf(writer.resolve('orders', key).redisKey);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit');

    // The slot is unassigned on every node; A keeps its keys.
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'DELSLOTS', slot);
    await relearn(writer);
    assert.equal(writer.nodeFor(writer.resolve('orders', key)), undefined, 'the writer knows no node for the slot');

    // strict: the write must be refused unless its invalidation reaches the node that holds the key.
    let acknowledged = false;
    try {
      await writer.put('orders', { ...key, n: 2 });
      acknowledged = true;
    } catch {
      // refused: nothing written, nothing to check
    }

    // The slot goes back to A (whose entry of n=1 is still tagged with A's unchanged epoch).
    await call(a, 'CLUSTER', 'ADDSLOTS', slot);
    await until('every node sees A own the slot again', async () => {
      for (const s of cluster.servers) {
        const r = (await call(s, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
        if (!r.some(([from, to, p]) => from <= slot && slot <= to && p[1] === a.port)) return false;
      }
      return true;
    });
    await relearn(reader);
    const r = await reader.get('orders', key);
    if (acknowledged) {
      assert.equal(r.item?.n, 2, `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged under strict`);
    }
  });
});
