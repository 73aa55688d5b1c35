/**
 * Outside review 5 of cluster mode, strict: a primary that lost its replicas because one was promoted
 * in its place. README ("Cluster mode, per target") and ARCHITECTURE.md ("Replication (`strict`)") skip
 * `WAIT` for a primary that reported no replica at its last verification, "nothing can be promoted in
 * its place". But a primary whose replica was just promoted (a takeover while the old primary cannot
 * hear the cluster: a partition) reports exactly that, no replica linked, and still answers as a
 * primary: a strict write's fence and end land there alone, acknowledged with no replica, while the
 * readers of the slot's new owner fill and are served the old item (G1, strict).
 *
 * The partition, made with the cluster's own commands: A has two replicas, B and C. A forgets B
 * (`CLUSTER FORGET`: A ignores every cluster message from or about B for the 60 s ban), then B takes
 * over (`CLUSTER FAILOVER TAKEOVER`) and C follows B. The rest of the cluster names B the slot's owner;
 * A, which hears nothing of it, still answers as the primary of its slots and still names C its
 * replica (as a primary on the losing side of a partition names the replicas it can no longer reach),
 * with none linked.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { deadlineClock } from '../../lib/clock.ts';
import { slotOf } from '../../lib/cache/slots.ts';
import { call, info, keyOn, useClusterFixture, warm, type SlotRanges } from '../helpers/cluster-fixture.ts';
import type { RedisServer } from '../helpers/redis-server.ts';

describe('review5: cluster mode, strict, an old primary whose replica was promoted in its place', () => {
  const { cluster, container, until } = useClusterFixture({ replicas: 2, nodeTimeoutMs: 5000 });

  test('G1, strict: a write the old primary alone acknowledged is not followed by a stale read from the new owner', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    await warm(writer);
    const a = cluster.primaries[0]!;
    const b = cluster.replicas[0]!;
    const linked = async (server: RedisServer): Promise<number | undefined> =>
      Number(/master_port:(\d+)/.exec(await info(server))?.[1] ?? Number.NaN);
    const c = (await Promise.all(cluster.servers.map(async (s) => ((await linked(s)) === a.port && s !== b ? s : undefined)))).find(
      (s) => s !== undefined,
    );
    assert.ok(c !== undefined && (await linked(b)) === a.port, 'A has two replicas, B and C');
    const key = await keyOn(writer, a, 'split');
    const slot = slotOf(writer.resolve('orders', key).redisKey);
    await call(a, 'WAIT', 2, 5000);
    await writer.put('orders', { ...key, n: 1 });

    // The partition: A hears nothing of B from here on; B takes over A's slots, C follows B.
    await call(a, 'CLUSTER', 'FORGET', String(await call(b, 'CLUSTER', 'MYID')));
    await call(b, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    const range = async (server: RedisServer): Promise<unknown[] | undefined> =>
      ((await call(server, 'CLUSTER', 'SLOTS')) as SlotRanges).find(([first, last]) => first <= slot && slot <= last);
    const owner = async (server: RedisServer): Promise<number | undefined> => ((await range(server))?.[2] as [string, number])?.[1];
    await until('B owns the slot for the rest of the cluster, C follows B; A owns it for itself, names C, has none linked', async () => {
      const others = await Promise.all(cluster.servers.filter((s) => s !== a).map(owner));
      const ofA = (await range(a)) ?? [];
      const ia = await info(a);
      return (
        others.every((p) => p === b.port) &&
        (await linked(c)) === b.port &&
        (ofA[2] as [string, number])[1] === a.port &&
        ofA.slice(3).some((r) => (r as [string, number])[1] === c.port) &&
        ia.includes('role:master') &&
        ia.includes('connected_slaves:0')
      );
    });

    // A reader on the cluster's side: learns B, waits out B's settle, fills n=1 there and hits it.
    // (A short fence time: B's settle, sealed first by this reader, is short.)
    const reader = container({ CACHE_NODES: cluster.primaries[1]!.url, DYNAMODB_DEADLINE_MS: '1000' });
    await warm(reader);
    assert.ok(
      reader.shards.nodes.some((n) => n.address.endsWith(`:${b.port}`)),
      'the reader routes the slot to B',
    );
    await reader.get('orders', key);
    const before = await reader.get('orders', key);
    assert.deepEqual([before.item?.n, before.cache], [1, 'hit']);

    // The writer, on A's side, verifies A as it does each half check interval: a primary, none linked.
    const onA = writer.shards.nodes.find((n) => n.address.endsWith(`:${a.port}`));
    assert.ok(onA !== undefined, 'the writer still routes the slot to A');
    await onA.reverify(deadlineClock() + 2000);

    // Act: a strict write of n=2. Strict may refuse it (no replica can acknowledge its fence); if it is
    // acknowledged, every read that starts after it must see n=2.
    let outcome = 'accepted';
    try {
      await writer.put('orders', { ...key, n: 2 });
    } catch (err) {
      outcome = String(err);
    }
    if (outcome === 'accepted') {
      const after = await reader.get('orders', key);
      assert.equal(
        after.item?.n,
        2,
        `a strict write of n=2 was acknowledged by A alone, then the reader was served n=${after.item?.n} (${after.cache}) by B`,
      );
    } else {
      assert.match(outcome, /no replica .* acknowledged/);
    }
  });
});
