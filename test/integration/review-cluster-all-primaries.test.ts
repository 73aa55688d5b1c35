/**
 * Outside review of cluster mode (CACHE_MODE=cluster): the topology is learnt again only from the
 * primaries the last answer named (cluster.ts `discover` asks `this.nodes`), never from the seed (the
 * configuration endpoint) again. When every primary a container knows is gone at once (an Availability
 * Zone that held them all, or the one primary of a one-shard cluster) and their replicas are promoted,
 * no node is left to ask: the container never learns the new primaries. Its strict writes are refused
 * while every new primary answers, for as long as the container lives (G3: "a strict write is refused
 * (503) only while its node does not answer"), and its reads all go around the cache.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { call, info, keyOn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';

describe('review: cluster mode, every known primary failed over at once', () => {
  const { cluster, container, until } = useClusterFixture({ replicas: 1, nodeTimeoutMs: 5000 });

  test('G3, strict: after all primaries are replaced by their replicas, the container learns the new primaries and its writes are accepted', async () => {
    // The seed is a node that stays (as a configuration endpoint does): replicas[0], promoted below.
    const writer = container({ CACHE_NODES: cluster.replicas[0]!.url, CACHE_WRITE_POLICY: 'strict' });
    await warm(writer);
    const key = await keyOn(writer, cluster.primaries[0]!, 'az');
    // Every replica linked first: a strict write waits for one (WAIT 1), and a replica still in its
    // first sync would refuse this write, which is not what the test is about.
    for (const p of cluster.primaries) await call(p, 'WAIT', 1, 5000);
    await writer.put('orders', { ...key, n: 1 });
    for (const p of cluster.primaries) await call(p, 'WAIT', 1, 2000);

    // The Availability Zone of the three primaries is lost; each replica takes over.
    await Promise.all(cluster.primaries.map((p) => p.kill()));
    for (const r of cluster.replicas) await call(r, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    await until('the replicas are the primaries', async () => {
      for (const r of cluster.replicas) if (!(await info(r)).includes('role:master')) return false;
      return true;
    });

    // Writes go on against the healthy cluster: within 60 attempts 100 ms apart (many check intervals
    // of 1 s, and a failure refresh at most every second), one is accepted.
    const refusals: string[] = [];
    let accepted = false;
    for (let i = 0; i < 60 && !accepted; i++) {
      try {
        await writer.put('orders', { ...key, n: 2 + i });
        accepted = true;
      } catch (err) {
        refusals.push(String(err));
        await sleep(100);
      }
    }
    const known = writer.shards.nodes.map((n) => n.address).join(', ');
    assert.ok(
      accepted,
      `${refusals.length} strict writes refused; primaries known: ${known} (the new ones: ${cluster.replicas.map((r) => r.port).join(', ')}); last: ${refusals.at(-1)}`,
    );
  });
});
