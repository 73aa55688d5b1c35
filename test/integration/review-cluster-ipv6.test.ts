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
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };

describe('review: cluster mode, nodes announced by IPv6 address', () => {
  let stack: TestStack;
  let cluster: RedisCluster;
  before(async () => {
    stack = await startStack({ shards: 1 });
    // Every node listens on 127.0.0.1 and ::1 and announces ::1 to the cluster (CLUSTER SLOTS, MOVED).
    cluster = await RedisServer.startCluster(3, { replicas: 0, extraArgs: ['--bind', '127.0.0.1', '::1', '--cluster-announce-ip', '::1'] });
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
