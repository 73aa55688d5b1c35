/**
 * Outside review of cluster mode (CACHE_MODE=cluster), the dirty-key repair (R6, `available`) after a
 * slot moved: ARCHITECTURE.md, "Cluster mode", says a dirty key "is delivered to the primary that held
 * it; a key that moved away answers with a redirect and counts as delivered (its entry went with its old
 * epoch's tag)". The tag is only untrusted while the entry is away: when the slot comes back to the
 * primary that tagged it, the entry the repair skipped is trusted and served again, although the
 * writer's repair "landed" (its dirty set is empty and the node is up).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };

describe('review: cluster mode, a dirty key whose slot moved away and back', () => {
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

  test('G1, available: a dirty key repaired by a redirect while its slot was away is served stale once the slot is back', async () => {
    // The writer connects as its own user, so that A can refuse it alone (a writer that cannot reach A
    // while the readers can: R6). Every node grants it everything.
    for (const s of cluster.servers) await call(s, 'ACL', 'SETUSER', 'writer', 'on', '>pw', '~*', '&*', '+@all');
    const url = new URL(cluster.primaries[0]!.url);
    url.username = 'writer';
    url.password = 'pw';
    const writer = container({ CACHE_NODES: url.href, CACHE_ALLOW_PLAIN_AUTH: '1', CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, c] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const lowest = Math.min(...ranges.filter((r) => r[2][1] === a.port).map((r) => r[0]));
    let key = await keyOn(writer, a, 'dirty-moved');
    for (let i = 0; slotOf(writer.resolve('orders', key).redisKey) === lowest; i++) key = await keyOn(writer, a, `dirty-moved${i}`);
    const rk = writer.resolve('orders', key).redisKey;
    const slot = slotOf(rk);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit');

    // A refuses the writer's scripts: its begin fails, the write commits, the key is dirty for A.
    await call(a, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await writer.put('orders', { ...key, n: 2 });
    const nodeA = () => writer.health().find((h) => h.address.endsWith(`:${a.port}`));
    assert.equal(nodeA()?.dirtyKeys, 1, `the key is dirty for A: ${JSON.stringify(writer.health())}`);

    // The slot moves to C (the entry of n=1 with it), then A lets the writer in again: its repair of
    // the key gets MOVED and counts as delivered.
    await migrate(slot, [rk], a, c);
    await call(a, 'ACL', 'SETUSER', 'writer', '+@all');
    await until('the writer repaired A', async () => {
      await writer.checkHealth();
      return nodeA()?.status === 'up' && nodeA()?.dirtyKeys === 0;
    });

    // The slot comes back to A, the entry of n=1 with it, still tagged with A's epoch.
    await migrate(slot, [rk], c, a);
    const r = await reader.get('orders', key);
    assert.equal(r.item?.n, 2, `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged and its repair landed`);
  });
});
