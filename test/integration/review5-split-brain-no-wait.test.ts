/**
 * Outside review 5 of cluster mode, strict: a primary that lost its replica because the replica was
 * promoted in its place. README ("Cluster mode, per target") and ARCHITECTURE.md ("Replication
 * (`strict`)") skip `WAIT` for a primary that reported no replica at its last verification, "nothing can
 * be promoted in its place". But a primary whose replica was just promoted (a takeover while the old
 * primary cannot hear the cluster: a partition, a paused process) reports exactly that, no replica, and
 * still answers as a primary: a strict write's fence and end land there alone, acknowledged without any
 * replica, while readers of the slot's new owner fill and are served the old item (G1, strict).
 *
 * The partition is made with the cluster's own commands: the old primary A forgets its replica B
 * (`CLUSTER FORGET`: A ignores every cluster message from or about B for the 60 s ban), then B takes
 * over (`CLUSTER FAILOVER TAKEOVER`). The rest of the cluster names B the slot's owner; A, which hears
 * nothing of it, still answers as the primary of its slots, with no replica linked (B, promoted, closed
 * its link to A): what A shows when only the cluster bus is cut, or when A was paused while B was
 * promoted, in the moment after it resumes and before it reads the cluster's news. A writer that
 * verified A while B was linked knew A had a replica in this epoch.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { deadlineClock } from '../../lib/clock.ts';
import { call, info, keyOn, useClusterFixture, warm, type SlotRanges } from '../helpers/cluster-fixture.ts';
import { slotOf } from '../../lib/cache/slots.ts';

describe('review5: cluster mode, strict, an old primary whose replica was promoted in its place', () => {
  const { cluster, container, until } = useClusterFixture({ replicas: 1, nodeTimeoutMs: 5000 });

  test('G1, strict: a write the old primary alone acknowledged is not followed by a stale read from the new owner', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    await warm(writer);
    const a = cluster.primaries[0]!;
    const b = cluster.replicas[0]!;
    assert.match(await info(b), new RegExp(`master_port:${a.port}\\r`));
    const key = await keyOn(writer, a, 'split');
    const slot = slotOf(writer.resolve('orders', key).redisKey);
    await call(a, 'WAIT', 1, 5000);
    await writer.put('orders', { ...key, n: 1 });

    // The partition: A hears nothing of B from here on; B takes over A's slots.
    const bId = String(await call(b, 'CLUSTER', 'MYID'));
    await call(a, 'CLUSTER', 'FORGET', bId);
    await call(b, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    const owner = async (server: typeof a): Promise<number | undefined> =>
      ((await call(server, 'CLUSTER', 'SLOTS')) as SlotRanges).find(([first, last]) => first <= slot && slot <= last)?.[2][1];
    await until('B owns the slot for the other primaries, A for itself, A with no replica linked', async () => {
      const others = await Promise.all([cluster.primaries[1]!, cluster.primaries[2]!, b].map(owner));
      const ia = await info(a);
      return (
        others.every((p) => p === b.port) && (await owner(a)) === a.port && ia.includes('role:master') && ia.includes('connected_slaves:0')
      );
    });

    // A reader on the cluster's side: learns B, waits out B's settle, fills n=1 there and hits it.
    // A short fence time: B's settle (sealed first by the reader) is short.
    const reader = container({ CACHE_NODES: cluster.primaries[1]!.url, DYNAMODB_DEADLINE_MS: '1000' });
    await warm(reader);
    assert.ok(
      reader.shards.nodes.some((n) => n.address.endsWith(`:${b.port}`)),
      'the reader routes the slot to B',
    );
    await reader.get('orders', key);
    const before = await reader.get('orders', key);
    assert.deepEqual([before.item?.n, before.cache], [1, 'hit']);

    // The writer, on A's side, verifies A as it does each half check interval: a primary, no replica.
    const onA = writer.shards.nodes.find((n) => n.address.endsWith(`:${a.port}`));
    assert.ok(onA !== undefined, 'the writer still routes the slot to A');
    await onA.reverify(deadlineClock() + 2000);

    // Act 1: a strict write of n=2. Strict may refuse it (no replica can acknowledge its fence); if it
    // is acknowledged, every read that starts after it must see n=2.
    const broken: string[] = [];
    let outcome = 'accepted';
    try {
      await writer.put('orders', { ...key, n: 2 });
    } catch (err) {
      outcome = String(err);
    }
    if (outcome === 'accepted') {
      const after = await reader.get('orders', key);
      if (after.item?.n !== 2)
        broken.push(
          `a strict write of n=2 was acknowledged by A alone, then the reader was served n=${after.item?.n} (${after.cache}) by B`,
        );
    } else {
      assert.match(outcome, /no replica .* acknowledged/);
    }

    // Act 2: n=3 written around the cache (another service), its stream record applied by a consumer
    // on A's side (the writer's container, which routes the slot to A). Under strict the invalidation
    // counts once a replica has it: either it fails (the record stays parked and is retried), or every
    // read that starts after it sees n=3 (G2).
    await container({ CACHE_MODE: 'off' }).put('orders', { ...key, n: 3 });
    let applied = true;
    try {
      await writer.invalidate(writer.resolve('orders', key));
    } catch {
      applied = false;
    }
    if (applied) {
      const after = await reader.get('orders', key);
      if (after.item?.n !== 3)
        broken.push(`the stream record of n=3 was applied on A alone, then the reader was served n=${after.item?.n} (${after.cache}) by B`);
    }
    assert.deepEqual(broken, []);
  });
});
