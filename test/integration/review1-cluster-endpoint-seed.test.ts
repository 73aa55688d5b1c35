/**
 * Outside review (review1) of cluster mode's node retirement (cluster.ts `apply`, with 5de41b1's
 * `closed` nodes), strict policy.
 *
 * CACHE_NODES names the configuration endpoint (README, "Cluster mode"): on ElastiCache a DNS name of
 * its own, which CLUSTER SLOTS never lists (it lists the nodes' own addresses). Until the first
 * topology answer the seed's node serves every slot; when the answer comes, the seed's node owns no
 * slot under its own name and is retired: closed (`node.close()`), never to reconnect. A cold
 * container's first requests were handed that node (nodeForKey before the answer) and their
 * verification asks for the topology (membership.sealSlot), so that very answer closes the node they
 * wait on.
 *
 * The interleaving:
 * 1. A cluster of three primaries, healthy; a TCP proxy stands for the configuration endpoint (its own
 *    address, forwarding to one primary), as ElastiCache's endpoint name does.
 * 2. A cold container writes a key at once: nodeForKey gives the seed's node.
 * 3. Its begin waits for the node's connection and verification; the verification asks for the
 *    topology, whose answer retires and closes the seed's node: the begin fails.
 * Expected, strict: the write is accepted (every primary answers: G3, "a strict write is refused
 * (503) only while its node does not answer"). Observed on main at d63e513: CacheUnavailableError.
 * Expected, available: the write commits with its key dirty on the closed node, which is never
 * probed again, so nothing repairs it but the stream record (G2); a warm container then serves the
 * old entry after the acknowledged write, although the writer could have reached every node (G1
 * under available holds "whenever the writer reached the node"). Observed: the old entry, a hit.
 * The same tests with the container seeded by a primary's own address (as the other cluster tests
 * are) pass: only a seed CLUSTER SLOTS does not name is retired.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { useClusterFixture, warm } from '../helpers/cluster-fixture.ts';
import type { ItemCache } from '../../lib/item-cache.ts';

describe('review1: cluster mode, a cold container behind a configuration endpoint', () => {
  const { cluster, container: clusterContainer } = useClusterFixture({ replicas: 0 });
  let endpoint: TcpProxy;
  before(async () => {
    endpoint = await TcpProxy.start(cluster.primaries[0]!.port);
  });
  after(async () => {
    await endpoint.stop();
  });

  /** A container of the cluster; `seed`: the URL it is configured with. */
  function container(seed: string, policy: 'strict' | 'available'): ItemCache {
    return clusterContainer({ CACHE_NODES: seed, CACHE_WRITE_POLICY: policy });
  }

  test("G3 (strict): a cold container's first write is not refused while every primary answers", async () => {
    const cold = container(endpoint.url, 'strict');
    const key = { customerId: 'cold-strict', orderId: 'o' };
    const outcome = await cold.put('orders', { ...key, total: 1 }).then(
      () => 'acknowledged',
      (err: Error) => `${err.name}: ${err.message}`,
    );
    assert.equal(outcome, 'acknowledged', 'every primary answers: the write is accepted');
  });

  test("G1 (available): a cold container's first write, acknowledged while every primary answers, is not followed by a read of the old entry", async () => {
    // 1. A warm container (seeded with a primary's own address) caches total=1 on the key's primary.
    // 2. A cold container (available, seeded with the endpoint) writes total=2: its begin goes to the
    //    seed's node, which the topology's first answer retires and closes under it; the begin fails,
    //    the key is kept dirty on that closed node (repaired never: it is never probed again), and the
    //    write commits and is acknowledged. The key's primary never saw an invalidation.
    // 3. The warm container reads: a hit on total=1. Only the write's stream record repairs it (G2);
    //    G1 under available is promised whenever the writer reached the node, and every node answered.
    const warmContainer = container(cluster.primaries[0]!.url, 'available');
    await warm(warmContainer);
    const key = { customerId: 'cold-available', orderId: 'o' };
    await warmContainer.put('orders', { ...key, total: 1 });
    assert.equal((await warmContainer.get('orders', key)).cache, 'hit', 'total=1 is cached');

    const cold = container(endpoint.url, 'available');
    await cold.put('orders', { ...key, total: 2 });

    const r = await warmContainer.get('orders', key);
    assert.equal(r.item?.total, 2, `a read after the acknowledged write returns it (got total=${r.item?.total} from ${r.cache})`);
  });
});
