/**
 * Cluster mode, R6 under `available`: a write's begin that meets a redirect (the writer's topology is
 * older than a slot migration) and then fails on the node the redirect names leaves its key dirty
 * there, where the key lives, not on the node that redirected it (which stays up and would never
 * repair it). Found while fixing the review's dirty-key finding (review-cluster-dirty-moved.test.ts):
 * the same rule, a dirty key is owed to the node that holds the key (protocol.ts followingRedirect).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };

describe('cluster mode, a write whose begin failed where a redirect led', () => {
  let stack: TestStack;
  let cluster: RedisCluster;
  before(async () => {
    stack = await startStack({ shards: 1 });
    cluster = await RedisServer.startCluster(3, { replicas: 0 });
  });
  after(async () => {
    await stack.stop();
    await cluster.stop();
  });

  function container(overrides: Record<string, string> = {}): ItemCache {
    return stack.cache({
      CACHE_MODE: 'cluster',
      CACHE_NODES: cluster.primaries[0]!.url,
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

  /** Moves `slot` (with `keys`) from one primary to another, as redis-cli --cluster reshard does. */
  async function migrate(slot: number, keys: string[], from: RedisServer, to: RedisServer): Promise<void> {
    const [fromId, toId] = [String(await call(from, 'CLUSTER', 'MYID')), String(await call(to, 'CLUSTER', 'MYID'))];
    await call(to, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
    await call(from, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
    for (const k of keys) await call(from, 'MIGRATE', '127.0.0.1', to.port, k, 0, 5000);
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
  }

  test('G1, available: the key is repaired on the node the redirect named, and no read after the repair is stale', async () => {
    for (const s of cluster.servers) await call(s, 'ACL', 'SETUSER', 'writer', 'on', '>pw', '~*', '&*', '+@all');
    const url = new URL(cluster.primaries[0]!.url);
    url.username = 'writer';
    url.password = 'pw';
    // A long check interval: the writer keeps the topology it learnt until a redirect tells it otherwise.
    const writer = container({
      CACHE_NODES: url.href,
      CACHE_ALLOW_PLAIN_AUTH: '1',
      CACHE_WRITE_POLICY: 'available',
      CACHE_CHECK_INTERVAL_SECONDS: '60',
    });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, c] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const lowest = Math.min(...ranges.filter((r) => r[2][1] === a.port).map((r) => r[0]));
    let key = await keyOn(writer, a, 'begin-moved');
    for (let i = 0; slotOf(writer.resolve('orders', key).redisKey) === lowest; i++) key = await keyOn(writer, a, `begin-moved${i}`);
    const rk = writer.resolve('orders', key).redisKey;
    const slot = slotOf(rk);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit');

    // The slot moves to C (the entry of n=1 with it); the writer still routes the key to A. C refuses
    // the writer's scripts: the begin is redirected there and fails, the write commits (available).
    await migrate(slot, [rk], a, c);
    await call(c, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await writer.put('orders', { ...key, n: 2 });
    await call(c, 'ACL', 'SETUSER', 'writer', '+@all');

    // The writer repairs what it owes: every node it knows up, and no key left dirty anywhere.
    await until('the writer owes nothing', async () => {
      for (const n of writer.shards.nodes) if (n.status === 'down') await n.probe();
      return writer.health().every((h) => h.status !== 'down' && h.dirtyKeys === 0);
    });

    // The slot comes back to A, the entry of n=1 with it, still tagged with A's epoch.
    await migrate(slot, [rk], c, a);
    await relearn(reader);
    const r = await reader.get('orders', key);
    assert.equal(r.item?.n, 2, `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged and its repair landed`);
  });
});
