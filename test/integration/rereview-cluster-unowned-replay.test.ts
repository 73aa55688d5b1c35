/**
 * Re-review of cluster mode's fixes (CONSISTENCY.md, "Adversarial review of cluster mode", second
 * round): the unowned-slot fix parks a key's stream invalidation while its slot has no owner and
 * replays it once the slot has one. But the entry to repair is not on the slot's next owner:
 * `CLUSTER DELSLOTS` leaves the keys on the old owner A, which can no longer be sent them (it does not
 * own the slot). When the slot is assigned to another primary B (`ADDSLOTS` there: an operator's fix),
 * the replayed invalidation reached B, which never held the key, and counted as applied; when the slot
 * later went back to A (a resharding; B has no key of it to migrate), A's entry of before, tagged with
 * A's unchanged epoch, was served: older than an acknowledged write (G1, available) and than a stream
 * record already applied (G2).
 *
 * The rule (ARCHITECTURE.md, "A slot with no owner"): an invalidation counts only once no other primary
 * holds keys of the key's slot that it cannot be sent (protocol.ts `invalidateStray`), so the record
 * stays parked while A holds them, and the sweep's retry once the slot is back on A deletes the entry.
 *
 * The stream consumer's, replayer's and sweep's invalidation is `ItemCache.invalidate` (lib/stream/);
 * the test calls it directly: while the slot has no owner (it throws: the record is parked), once B
 * owns it (it throws still: A holds the slot's keys), then once the slot is back on A (it succeeds).
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

describe('re-review: cluster mode, a parked invalidation of a key whose slot changed owner while unowned', () => {
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

  async function ownerEverywhere(slot: number, server: RedisServer): Promise<void> {
    await until(`every node sees ${server.port} own slot ${slot}`, async () => {
      for (const s of cluster.servers) {
        const r = (await call(s, 'CLUSTER', 'SLOTS')) as Ranges;
        if (!r.some(([from, to, p]) => from <= slot && slot <= to && p[1] === server.port)) return false;
      }
      return true;
    });
  }

  /** The topology learnt again now (the check interval's refresh, awaited). */
  async function relearn(cache: ItemCache): Promise<void> {
    await (cache.shards as unknown as { cluster: { refresh(): Promise<void> } }).cluster.refresh();
  }

  test("G1/G2, available: the record stays parked while the old owner holds the slot's keys, and repairs it once the slot is back there", async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    // A replayer that learnt the topology before the slot was taken and not since: its invalidation
    // goes to A, whose MOVED leads it to B.
    const replayer = container({ CACHE_WRITE_POLICY: 'available' });
    await Promise.all([warm(writer), warm(reader), warm(replayer)]);
    const [a, b] = [cluster.primaries[0]!, cluster.primaries[1]!];
    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as Ranges;
    const ofA = ranges.filter((r) => r[2][1] === a.port);
    const lowest = Math.min(...ofA.map((r) => r[0]));
    // A key of A not in A's lowest slot (where A's epoch's seal lives).
    let key: Key | undefined;
    for (let i = 0; key === undefined; i++) {
      const k = { customerId: `replay-${i}`, orderId: 'o' };
      const s = slotOf(writer.resolve('orders', k).redisKey);
      if (s !== lowest && ofA.some(([from, to]) => from <= s && s <= to)) key = k;
    }
    const rk = writer.resolve('orders', key);
    const slot = slotOf(rk.redisKey);

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit', 'the reader hits n=1 on A');

    // The slot is unassigned on every node; A keeps its keys (DELSLOTS deletes none).
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'DELSLOTS', slot);
    await relearn(writer);
    await relearn(reader);
    assert.equal(writer.nodeFor(rk), undefined, 'the writer knows no owner for the slot');

    // available: committed, logged CACHE_DIRTY_DATA; its stream record cannot be applied: parked.
    await writer.put('orders', { ...key, n: 2 });
    await assert.rejects(writer.invalidate(rk), 'the invalidation of an unowned key throws (the record is parked)');
    assert.equal(Number(await call(a, 'CLUSTER', 'COUNTKEYSINSLOT', slot)), 1, "A still holds the key's hash");

    // The operator gives the slot to B; the replayer's next try reaches B and succeeds.
    await call(b, 'CLUSTER', 'ADDSLOTS', slot);
    await ownerEverywhere(slot, b);
    await relearn(writer);
    assert.ok(writer.nodeFor(rk)?.id.endsWith(`:${b.port}`), 'the writer routes the key to B');
    // A still holds keys of the slot, which it does not own: the record stays parked.
    await assert.rejects(writer.invalidate(rk), /holds keys of slot/, 'the invalidation waits for the keys A holds');
    assert.equal(Number(await call(b, 'EXISTS', rk.redisKey)), 0, 'B never held the key');
    assert.ok(replayer.nodeFor(rk)?.id.endsWith(`:${a.port}`), 'the replayer still routes the key to A');
    await assert.rejects(replayer.invalidate(rk), /holds keys of slot/, 'the node that redirected it is checked too');

    // Later the slot is resharded back to A, the usual procedure (B has no entry of the key to migrate;
    // its epoch's seal may have moved into the slot, its lowest now, and goes with it).
    const idA = String(await call(a, 'CLUSTER', 'MYID'));
    const idB = String(await call(b, 'CLUSTER', 'MYID'));
    await call(a, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', idB);
    await call(b, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', idA);
    for (const k of (await call(b, 'CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[]) {
      await call(b, 'MIGRATE', '127.0.0.1', a.port, k, 0, 5000);
    }
    await call(a, 'CLUSTER', 'SETSLOT', slot, 'NODE', idA);
    await call(b, 'CLUSTER', 'SETSLOT', slot, 'NODE', idA);
    for (const s of cluster.servers) if (s !== a && s !== b) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', idA);
    await ownerEverywhere(slot, a);
    await relearn(reader);
    // The sweep's next try reaches A, which owns the slot again: applied, the parked record deleted.
    await relearn(writer);
    await writer.invalidate(rk);

    const r = await reader.get('orders', key);
    assert.equal(
      r.item?.n,
      2,
      `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged and its stream record applied`,
    );
  });
});
