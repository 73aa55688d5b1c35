/**
 * The set-up the cluster-mode integration tests share: a local Redis Cluster
 * (RedisServer.startCluster), DynamoDB tables under a fresh prefix (startStack), library containers
 * in cluster mode, and the small commands a test sends the cluster's servers itself.
 *
 *   describe('cluster mode, …', () => {
 *     const { stack, cluster, container } = useClusterFixture({ replicas: 1, nodeTimeoutMs: 5000 });
 *     test('…', async () => {
 *       const writer = container({ CACHE_WRITE_POLICY: 'strict' });
 *       await warm(writer);
 *       …
 *
 * Each file (each describe) still gets a cluster of its own: most of these tests fail nodes over,
 * kill them, move or unassign slots, or start the servers with other arguments, and a test must not
 * depend on what another file left behind.
 */
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ItemCache, ItemCacheOptions } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';
import { RedisServer, type RedisCluster, type RedisServerOptions } from './redis-server.ts';
import { startStack, type TestStack } from './stack.ts';

/** A key of the example `orders` table. */
export type OrderKey = { customerId: string; orderId: string };

/** CLUSTER SLOTS as a server answers it: [first slot, last slot, [primary's host, primary's port, …], …replicas]. */
export type SlotRanges = [number, number, [string, number]][];

/** How many primaries every cluster here has (`redis-cli --cluster create` needs at least three). */
const PRIMARIES = 3;

/** One command sent to one server over a client of its own, closed before it returns. */
export async function call(server: RedisServer, ...args: (string | number)[]): Promise<unknown> {
  const c = server.client({ maxRetriesPerRequest: 1 });
  try {
    return await c.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    c.disconnect();
  }
}

/** The server's INFO replication (its role, its primary, its replicas and their links). */
export async function info(server: RedisServer): Promise<string> {
  return String(await call(server, 'INFO', 'replication'));
}

/** Waits until every primary this container knows is verified and serves reads (a cold start). */
export async function warm(cache: ItemCache): Promise<void> {
  await cache.checkHealth();
  for (
    let i = 0;
    i < 200 && !(cache.shards.nodes.length === PRIMARIES && cache.shards.nodes.every((n) => n.readable && n.health().status === 'up'));
    i++
  ) {
    await sleep(25);
    await cache.checkHealth();
  }
}

/** A key whose slot the server owns now (CLUSTER SLOTS as the server itself answers). */
export async function keyOn(cache: ItemCache, server: RedisServer, tag: string): Promise<OrderKey> {
  const ranges = (await call(server, 'CLUSTER', 'SLOTS')) as SlotRanges;
  for (let i = 0; ; i++) {
    const key = { customerId: `${tag}-${i}`, orderId: 'o' };
    const slot = slotOf(cache.resolve('orders', key).redisKey);
    if (ranges.some(([a, b, p]) => a <= slot && slot <= b && p[1] === server.port)) return key;
  }
}

/**
 * A key whose slot the server owns now, other than the server's lowest slot: the one that holds the
 * seal of the server's epoch, which a test that moves or unassigns the key's slot must leave in place.
 */
export async function keyBesideSeal(cache: ItemCache, server: RedisServer, tag: string): Promise<OrderKey> {
  const ranges = (await call(server, 'CLUSTER', 'SLOTS')) as SlotRanges;
  const lowest = Math.min(...ranges.filter((r) => r[2][1] === server.port).map((r) => r[0]));
  let key = await keyOn(cache, server, tag);
  for (let i = 0; slotOf(cache.resolve('orders', key).redisKey) === lowest; i++) key = await keyOn(cache, server, `${tag}${i}`);
  return key;
}

/** A put's outcome as a string: 'accepted', or the error it was refused with (what a test asserts on). */
export async function putOutcome(cache: ItemCache, item: OrderKey & { n: number }): Promise<string> {
  try {
    await cache.put('orders', item);
    return 'accepted';
  } catch (err) {
    return String(err);
  }
}

/** Hands `owed` (redis key → the retired node it was owed to) to their owners, as the map does when it retires a node (cluster.ts handOver). */
export function handOver(cache: ItemCache, owed: Map<string, string>): void {
  const map = (cache.shards as unknown as { cluster: Record<string, unknown> }).cluster as {
    handOver(owed: Map<string, string>, flush: string | undefined, owners: unknown, nodes: unknown): void;
    owners: unknown;
    nodes: unknown;
  };
  map.handOver(owed, undefined, map.owners, map.nodes);
}

/** The topology learnt again now (the check interval's refresh, awaited). */
export async function relearn(cache: ItemCache): Promise<void> {
  await (cache.shards as unknown as { cluster: { refresh(): Promise<void> } }).cluster.refresh();
}

export interface ClusterFixture {
  /** Tables under a fresh prefix (and one shard, unused in cluster mode); filled in by the describe's `before`. */
  stack: TestStack;
  /** The describe's cluster; filled in by its `before`. */
  cluster: RedisCluster;
  /**
   * A container in cluster mode seeded with the first primary, its check interval 1 s, no start
   * cycles, and a short commit deadline that keeps the settle (the fence time) short.
   */
  container(overrides?: Record<string, string>, options?: Omit<ItemCacheOptions, 'config' | 'tables'>): ItemCache;
  /** Polls `check` (a throw counts as not yet); on time out, says every server's role. */
  until(what: string, check: () => Promise<boolean>): Promise<void>;
  /**
   * Creates `user` on every server (every key, channel and command, then `rules`, e.g. '-info') and
   * returns the first primary's URL with its credentials: a container seeded with it connects as that
   * user, so that a server can refuse it alone.
   */
  addUser(user: string, password: string, ...rules: string[]): Promise<string>;
  /** Moves `slot` (with `keys`) from one primary to another, then sends SETSLOT NODE to every server. */
  migrate(slot: number, keys: string[], from: RedisServer, to: RedisServer): Promise<void>;
  /**
   * Moves `slot` from one primary to another as redis-cli --cluster reshard does: SETSLOT NODE on the
   * destination, the source, then every other server that is a primary now (after a fail-over too),
   * and resolves once every server sees the destination own the slot. `keys` are the keys moved; by
   * default, every key the source holds in the slot once it is migrating (GETKEYSINSLOT, up to 100).
   */
  reshard(slot: number, from: RedisServer, to: RedisServer, keys?: string[]): Promise<void>;
  /** Polls until every server's CLUSTER SLOTS names `server` the owner of `slot`. */
  ownerEverywhere(slot: number, server: RedisServer): Promise<void>;
}

/**
 * Registers, in the calling describe, a `before` that starts the stack and a cluster of three
 * primaries with `opts.replicas` replicas each, and an `after` that closes every container the stack
 * made, then stops the servers. `stack` and `cluster` are the objects returned here, filled in by that
 * `before`: read them inside tests and hooks, not while the describe is declared.
 */
export function useClusterFixture(opts: RedisServerOptions & { replicas: number; nodeTimeoutMs?: number }): ClusterFixture {
  const stack = {} as TestStack;
  const cluster = {} as RedisCluster;
  before(async () => {
    Object.assign(stack, await startStack({ shards: 1 }));
    Object.assign(cluster, await RedisServer.startCluster(PRIMARIES, opts));
  });
  after(async () => {
    // Containers first: a client left open would reconnect to the stopped servers and keep the process alive.
    await stack.stop?.();
    await cluster.stop?.();
  });

  function container(overrides: Record<string, string> = {}, options: Omit<ItemCacheOptions, 'config' | 'tables'> = {}): ItemCache {
    return stack.cache(
      {
        CACHE_MODE: 'cluster',
        CACHE_NODES: cluster.primaries[0]!.url,
        CACHE_CHECK_INTERVAL_SECONDS: '1',
        CACHE_START_CYCLES: '0',
        DYNAMODB_DEADLINE_MS: '3000',
        ...overrides,
      },
      options,
    );
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

  async function addUser(user: string, password: string, ...rules: string[]): Promise<string> {
    for (const s of cluster.servers) await call(s, 'ACL', 'SETUSER', user, 'on', `>${password}`, '~*', '&*', '+@all', ...rules);
    const url = new URL(cluster.primaries[0]!.url);
    url.username = user;
    url.password = password;
    return url.href;
  }

  /** IMPORTING on `to`, MIGRATING on `from`, then MIGRATE of the keys; returns `to`'s node id. */
  async function moveKeys(slot: number, keys: string[] | undefined, from: RedisServer, to: RedisServer): Promise<string> {
    const [fromId, toId] = [String(await call(from, 'CLUSTER', 'MYID')), String(await call(to, 'CLUSTER', 'MYID'))];
    await call(to, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
    await call(from, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
    // Listed once the slot is migrating: a key written before then is moved, one written since is sent to `to`.
    for (const k of keys ?? ((await call(from, 'CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[])) {
      await call(from, 'MIGRATE', '127.0.0.1', to.port, k, 0, 5000);
    }
    return toId;
  }

  async function migrate(slot: number, keys: string[], from: RedisServer, to: RedisServer): Promise<void> {
    const toId = await moveKeys(slot, keys, from, to);
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
  }

  async function reshard(slot: number, from: RedisServer, to: RedisServer, keys?: string[]): Promise<void> {
    const toId = await moveKeys(slot, keys, from, to);
    await call(to, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    await call(from, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    for (const s of cluster.servers) {
      if (s !== to && s !== from && (await info(s)).includes('role:master')) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    }
    await ownerEverywhere(slot, to);
  }

  async function ownerEverywhere(slot: number, server: RedisServer): Promise<void> {
    await until(`every node sees ${server.port} own slot ${slot}`, async () => {
      for (const s of cluster.servers) {
        const ranges = (await call(s, 'CLUSTER', 'SLOTS')) as SlotRanges;
        if (!ranges.some(([first, last, p]) => first <= slot && slot <= last && p[1] === server.port)) return false;
      }
      return true;
    });
  }

  return { stack, cluster, container, until, addUser, migrate, reshard, ownerEverywhere };
}
