/**
 * Outside review of cluster mode (CACHE_MODE=cluster): a cluster that announces its nodes by IPv6
 * address (ElastiCache's IPv6 and dual-stack network types; `cluster-announce-ip`). cluster.ts `nodeAt`
 * builds each node's URL by setting `url.hostname` to the host CLUSTER SLOTS (or a MOVED) gave; the URL
 * standard ignores a hostname that is an IPv6 address without brackets, so the node keeps the seed's
 * host with the node's port. Every primary is then dialled at the configuration endpoint's host: here
 * nothing listens there for the primary below, which stays down; on ElastiCache (every node on port
 * 6379) each "primary" is whichever node the endpoint's name resolves to. G3: strict writes are refused
 * while their primary answers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { call, keyOn, useClusterFixture } from '../helpers/cluster-fixture.ts';

describe('review: cluster mode, nodes announced by IPv6 address', () => {
  // Every node listens on 127.0.0.1 and ::1 and announces ::1 to the cluster (CLUSTER SLOTS, MOVED).
  const { stack, cluster, container } = useClusterFixture({
    replicas: 0,
    extraArgs: ['--bind', '127.0.0.1', '::1', '--cluster-announce-ip', '::1'],
  });

  test('G3, strict: a primary announced as ::1 is reached at ::1, and a strict write of its key is accepted', async () => {
    const [seed, other] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const ranges = (await call(seed, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    assert.ok(
      ranges.every((r) => r[2][0] === '::1'),
      `the cluster announces ::1: ${JSON.stringify(ranges.map((r) => r[2]))}`,
    );
    const key = await keyOn(stack.cache({ CACHE_MODE: 'off' }), other, 'ipv6');
    // That primary now listens only where the cluster says it is.
    await call(other, 'CONFIG', 'SET', 'bind', '::1');

    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    await writer.checkHealth();
    let error: unknown;
    for (let i = 0; i < 20; i++) {
      try {
        await writer.put('orders', { ...key, n: i });
        error = undefined;
        break;
      } catch (err) {
        error = err;
        await sleep(100);
      }
    }
    const known = writer.shards.nodes.map((n) => n.address).join(', ');
    assert.equal(error, undefined, `strict write refused; primaries known: ${known}; ${String(error)}`);
  });
});
