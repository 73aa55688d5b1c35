/**
 * Review 2 of cluster mode's fixes: the rule of ARCHITECTURE.md, "A slot with no owner" ("a stream
 * invalidation counts only once no other primary holds keys of the key's slot that it cannot be sent")
 * is checked against `peersOf(owner)`, the primaries of the topology learnt last. A container that has
 * not learnt the topology yet (a cold start: the stream consumer's Lambda is one at every scale-out and
 * after every recycle) has one node, its seed, which owns every slot until CLUSTER SLOTS answers
 * (cluster.ts constructor). Its invalidation goes to the seed C; C redirects (MOVED) to the slot's
 * owner B, which is invalidated; the check for strays covers C (the node that redirected) and the
 * peers computed before the topology was known: none. The primary A that kept the slot's keys after
 * `CLUSTER DELSLOTS` is never asked, the record counts as applied and is deleted, and when the slot is
 * back on A its entry of before is served: older than an acknowledged write and than a stream record
 * applied (G2; G1 available).
 *
 * The invalidation is `ItemCache.invalidate`, which the consumer, replayer and sweep call (lib/stream/).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, relearn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };
type Ranges = [number, number, [string, number]][];

describe('review 2: cluster mode, a cold container applies a stream invalidation without asking every primary', () => {
  const { stack, cluster, container, until, ownerEverywhere } = useClusterFixture({ replicas: 0 });

  test('G2, available: a cold consumer seeded with another primary counts the record applied while A holds the key', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, b, c] = [cluster.primaries[0]!, cluster.primaries[1]!, cluster.primaries[2]!];
    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as Ranges;
    const ofA = ranges.filter((r) => r[2][1] === a.port);
    const lowest = Math.min(...ofA.map((r) => r[0]));
    let key: Key | undefined;
    for (let i = 0; key === undefined; i++) {
      const k = { customerId: `cold-${i}`, orderId: 'o' };
      const s = slotOf(writer.resolve('orders', k).redisKey);
      if (s !== lowest && ofA.some(([from, to]) => from <= s && s <= to)) key = k;
    }
    const rk = writer.resolve('orders', key);
    const slot = slotOf(rk.redisKey);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit', 'the reader hits n=1 on A');

    // The slot is unassigned (A keeps its keys), n=2 is committed (available), then B gets the slot.
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'DELSLOTS', slot);
    await relearn(writer);
    await writer.put('orders', { ...key, n: 2 });
    await call(b, 'CLUSTER', 'ADDSLOTS', slot);
    await ownerEverywhere(slot, b);
    assert.equal(Number(await call(a, 'CLUSTER', 'COUNTKEYSINSLOT', slot)), 1, "A still holds the key's hash");
    // A warm container keeps the record parked (the fix).
    await relearn(writer);
    await assert.rejects(writer.invalidate(rk), /holds keys of slot/, 'a warm consumer parks the record');

    // A stream consumer's container starting now, its configuration endpoint resolving to C: its first
    // invalidation is the record's (or the sweep's retry of it).
    const consumer = container({
      CACHE_NODES: c.url,
      CACHE_WRITE_POLICY: 'available',
      CACHE_COMMAND_TIMEOUT_MS: '2000',
      CACHE_CONNECT_TIMEOUT_MS: '2000',
    });
    const parked = await consumer.invalidate(rk).then(
      () => false,
      () => true,
    );

    // The slot goes back to A (B's keys of it, none, migrated), the usual resharding.
    const idA = String(await call(a, 'CLUSTER', 'MYID'));
    const idB = String(await call(b, 'CLUSTER', 'MYID'));
    await call(a, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', idB);
    await call(b, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', idA);
    for (const k of (await call(b, 'CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[]) {
      await call(b, 'MIGRATE', '127.0.0.1', a.port, k, 0, 5000);
    }
    for (const s of [a, b, c]) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', idA);
    await ownerEverywhere(slot, a);
    await relearn(reader);
    // A parked record is retried by the sweep once the slot is back on A (what the rule relies on).
    if (parked) {
      await relearn(writer);
      await writer.invalidate(rk);
    }

    const r = await reader.get('orders', key);
    assert.equal(
      r.item?.n,
      2,
      `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged; the cold consumer counted its stream record applied (parked: ${parked}) while A held the slot's key`,
    );
  });
});
