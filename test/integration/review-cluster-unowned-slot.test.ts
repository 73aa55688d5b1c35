/**
 * Outside review of cluster mode (CACHE_MODE=cluster): a slot that the topology shows with no owner
 * (CLUSTER SLOTS leaves it out: a slot unassigned by an operator's DELSLOTS, a resharding that failed
 * half way, `redis-cli --cluster fix`) maps to no node, and `CacheProtocol.write` then takes the
 * cache-off path: the write is committed in DynamoDB with no fence and no invalidation, under `strict`
 * too. The entries the old owner holds for that slot keep their epoch's tag; when the slot is assigned
 * to it again they are served, older than the acknowledged write: G1 broken under `strict`, whose
 * promise is to refuse a write whose node cannot be invalidated (ARCHITECTURE.md, "How a write
 * travels", R6).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };

describe('review: cluster mode, a slot with no owner in the topology', () => {
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

  test('G1, strict: a write of a key whose slot has no owner is committed unfenced, and the old owner serves its old entry once the slot is back', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const a = cluster.primaries[0]!;
    // A key of A that is not in A's lowest slot (where A's epoch's seal lives).
    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
    const lowest = Math.min(...ranges.filter((r) => r[2][1] === a.port).map((r) => r[0]));
    let key = await keyOn(writer, a, 'unowned');
    for (let i = 0; slotOf(writer.resolve('orders', key).redisKey) === lowest; i++) key = await keyOn(writer, a, `unowned${i}`);
    const slot = slotOf(writer.resolve('orders', key).redisKey);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit');

    // The slot is unassigned on every node; A keeps its keys.
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'DELSLOTS', slot);
    await relearn(writer);
    assert.equal(writer.nodeFor(writer.resolve('orders', key)), undefined, 'the writer knows no node for the slot');

    // strict: the write must be refused unless its invalidation reaches the node that holds the key.
    let acknowledged = false;
    try {
      await writer.put('orders', { ...key, n: 2 });
      acknowledged = true;
    } catch {
      // refused: nothing written, nothing to check
    }

    // The slot goes back to A (whose entry of n=1 is still tagged with A's unchanged epoch).
    await call(a, 'CLUSTER', 'ADDSLOTS', slot);
    await until('every node sees A own the slot again', async () => {
      for (const s of cluster.servers) {
        const r = (await call(s, 'CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
        if (!r.some(([from, to, p]) => from <= slot && slot <= to && p[1] === a.port)) return false;
      }
      return true;
    });
    await relearn(reader);
    const r = await reader.get('orders', key);
    if (acknowledged) {
      assert.equal(r.item?.n, 2, `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged under strict`);
    }
  });
});
