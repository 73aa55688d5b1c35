/**
 * Outside review of cluster mode (CACHE_MODE=cluster): the topology is learnt again only from the
 * primaries the last answer named (cluster.ts `discover` asks `this.nodes`), never from the seed (the
 * configuration endpoint) again. When every primary a container knows is gone at once (an Availability
 * Zone that held them all, or the one primary of a one-shard cluster) and their replicas are promoted,
 * no node is left to ask: the container never learns the new primaries. Its strict writes are refused
 * while every new primary answers, for as long as the container lives (G3: "a strict write is refused
 * (503) only while its node does not answer"), and its reads all go around the cache.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };

describe('review: cluster mode, every known primary failed over at once', () => {
  let stack: TestStack;
  let cluster: RedisCluster;
  before(async () => {
    stack = await startStack({ shards: 1 });
    cluster = await RedisServer.startCluster(3, { replicas: 1, nodeTimeoutMs: 5000 });
  });
  after(async () => {
    await stack.stop();
    await cluster.stop();
  });

  function container(overrides: Record<string, string> = {}): ItemCache {
    return stack.cache({
      CACHE_MODE: 'cluster',
      CACHE_NODES: cluster.replicas[0]!.url,
      CACHE_CHECK_INTERVAL_SECONDS: '1',
      CACHE_START_CYCLES: '0',
      DYNAMODB_DEADLINE_MS: '3000',
      ...overrides,
    });
  }

  async function call(server: RedisServer, ...args: (string | number)[]): Promise<unknown> {
    const c = server.client({ maxRetriesPerRequest: 1 });
    try {
      return await c.call(String(args[0]), ...args.slice(1).map(String));
    } finally {
      c.disconnect();
    }
  }

  async function info(server: RedisServer): Promise<string> {
    return String(await call(server, 'INFO', 'replication'));
  }

  async function until(what: string, check: () => Promise<boolean>): Promise<void> {
    for (let i = 0; i < 400; i++) {
      if (await check().catch(() => false)) return;
      await sleep(25);
    }
    const roles = await Promise.all(
      cluster.servers.map(async (s) => `${s.port}: ${(await info(s).catch(() => '')).replace(/\r\n/g, ' ')}`),
    );
    throw new Error(`timed out waiting for ${what}\n${roles.join('\n')}`);
  }

  async function warm(cache: ItemCache): Promise<void> {
    await cache.checkHealth();
    for (
      let i = 0;
      i < 200 && !(cache.shards.nodes.length === 3 && cache.shards.nodes.every((n) => n.readable && n.health().status === 'up'));
      i++
    ) {
      await sleep(25);
      await cache.checkHealth();
    }
  }

  /** A key whose slot the server owns now (CLUSTER SLOTS as the server itself answers). */
  async function keyOn(cache: ItemCache, server: RedisServer, tag: string): Promise<Key> {
    const ranges = (await call(server, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    for (let i = 0; ; i++) {
      const key = { customerId: `${tag}-${i}`, orderId: 'o' };
      const slot = slotOf(cache.resolve('orders', key).redisKey);
      if (ranges.some(([a, b, p]) => a <= slot && slot <= b && p[1] === server.port)) return key;
    }
  }

  /** The topology learnt again now (the check interval's refresh, awaited). */
  async function relearn(cache: ItemCache): Promise<void> {
    await (cache.shards as unknown as { cluster: { refresh(): Promise<void> } }).cluster.refresh();
  }

  test('G3, strict: after all primaries are replaced by their replicas, the container learns the new primaries and its writes are accepted', async () => {
    // The seed is a node that stays (as a configuration endpoint does): replicas[0], promoted below.
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
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
