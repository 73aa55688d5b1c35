/**
 * Re-review of cluster mode's fixes (CONSISTENCY.md, "Adversarial review of cluster mode", second round): a dirty key
 * (R6, `available`) whose slot moved away is, since the fix, delivered where the redirect names, or,
 * when that node C cannot take it, "one of that node's own dirty keys, repaired before it is trusted"
 * (ARCHITECTURE.md, "Topology and dirty keys"; node.ts `invalidateMoved`). But a node that owns no slot
 * any more is retired from the map with its dirty keys (cluster.ts `apply`: "nothing is owed to it"):
 * when C is failed over to its replica C' (which holds the key's entry, still tagged with the first
 * owner A's epoch), the owed invalidation is dropped, the writer's health shows no dirty key anywhere,
 * and when the slot is resharded back to A the entry of before is trusted again there and served, older
 * than the acknowledged write whose repair the writer never delivered (G1, available). The fix: a
 * retired node's dirty keys are handed to each key's current owner (ARCHITECTURE.md, "Topology and
 * dirty keys").
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };
type Ranges = [number, number, [string, number]][];

describe('re-review: cluster mode, a dirty key handed to a node that is then retired', () => {
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
    throw new Error(`timed out waiting for ${what}`);
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

  async function relearn(cache: ItemCache): Promise<void> {
    await (cache.shards as unknown as { cluster: { refresh(): Promise<void> } }).cluster.refresh();
  }

  async function masters(): Promise<RedisServer[]> {
    const out: RedisServer[] = [];
    for (const s of cluster.servers) if ((await info(s)).includes('role:master')) out.push(s);
    return out;
  }

  /** Moves `slot` (with `keys`) from one primary to another, as redis-cli --cluster reshard does (SETSLOT NODE on primaries only). */
  async function migrate(slot: number, keys: string[], from: RedisServer, to: RedisServer): Promise<void> {
    const [fromId, toId] = [String(await call(from, 'CLUSTER', 'MYID')), String(await call(to, 'CLUSTER', 'MYID'))];
    await call(to, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
    await call(from, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
    for (const k of keys) await call(from, 'MIGRATE', '127.0.0.1', to.port, k, 0, 5000);
    await call(to, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    await call(from, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    for (const s of await masters()) if (s !== to && s !== from) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    await until(`every node sees ${to.port} own slot ${slot}`, async () => {
      for (const s of cluster.servers) {
        const r = (await call(s, 'CLUSTER', 'SLOTS')) as Ranges;
        if (!r.some(([lo, hi, p]) => lo <= slot && slot <= hi && p[1] === to.port)) return false;
      }
      return true;
    });
  }

  test("G1, available: the invalidation owed to the retired node goes to the slot's new owner, and the old entry is never served", async () => {
    // The writer connects as its own user, so that a node can refuse it alone (a writer that cannot
    // reach a node while the readers can: R6). Every node grants it everything.
    for (const s of cluster.servers) await call(s, 'ACL', 'SETUSER', 'writer', 'on', '>pw', '~*', '&*', '+@all');
    const url = new URL(cluster.primaries[0]!.url);
    url.username = 'writer';
    url.password = 'pw';
    const writer = container({ CACHE_NODES: url.href, CACHE_ALLOW_PLAIN_AUTH: '1', CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, c, c2] = [cluster.primaries[0]!, cluster.primaries[1]!, cluster.replicas[1]!];
    assert.match(await info(c2), new RegExp(`master_port:${c.port}\\r`));
    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as Ranges;
    const ofA = ranges.filter((r) => r[2][1] === a.port);
    const lowest = Math.min(...ofA.map((r) => r[0]));
    let key: Key | undefined;
    for (let i = 0; key === undefined; i++) {
      const k = { customerId: `retired-${i}`, orderId: 'o' };
      const s = slotOf(writer.resolve('orders', k).redisKey);
      if (s !== lowest && ofA.some(([lo, hi]) => lo <= s && s <= hi)) key = k;
    }
    const rk = writer.resolve('orders', key).redisKey;
    const slot = slotOf(rk);
    const nodeAt = (port: number) => writer.health().find((h) => h.address.endsWith(`:${port}`));

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit', 'the reader hits n=1 on A');

    // A refuses the writer's scripts: its begin fails, the write commits, the key is dirty for A.
    await call(a, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await writer.put('orders', { ...key, n: 2 });
    assert.equal(nodeAt(a.port)?.dirtyKeys, 1, `the key is dirty for A: ${JSON.stringify(writer.health())}`);

    // The slot moves to C (the entry of n=1 with it, A's tag on it); C now refuses the writer, A lets it
    // in again: A's repair meets MOVED, C cannot take it, so the key is C's dirty key (the fix).
    await migrate(slot, [rk], a, c);
    await call(c, 'ACL', 'SETUSER', 'writer', '-evalsha', '-eval');
    await call(a, 'ACL', 'SETUSER', 'writer', '+@all');
    await until('the writer repaired A, the key dirty for C', async () => {
      await writer.checkHealth();
      return nodeAt(a.port)?.status === 'up' && nodeAt(a.port)?.dirtyKeys === 0 && nodeAt(c.port)?.dirtyKeys === 1;
    });

    // C is failed over to its replica C' (which holds the entry of n=1, still tagged with A's epoch).
    await call(c2, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    await until(
      "C' primary, C its replica",
      async () => (await info(c2)).includes('role:master') && (await info(c)).includes('role:slave'),
    );
    await relearn(writer);
    const owed = writer.health().reduce((n, h) => n + h.dirtyKeys, 0);
    // C retired from the writer's map: the key it was owed is handed to the slot's owner now, C', and
    // delivered there before C' is trusted again (cluster.ts `apply`). Before the fix it was dropped,
    // so C' was up with nothing owed at once.
    await until("C' up, nothing owed to it", async () => {
      await writer.checkHealth();
      return nodeAt(c2.port)?.status === 'up' && nodeAt(c2.port)?.dirtyKeys === 0;
    });

    // The slot is resharded back to A, its entry with it: A's tag, A's unchanged epoch.
    await migrate(slot, [rk], c2, a);
    await relearn(reader);
    const r = await reader.get('orders', key);
    assert.equal(
      r.item?.n,
      2,
      `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged; the writer owes ${owed} invalidation(s) after C was retired: ${JSON.stringify(writer.health())}`,
    );
  });
});
