/**
 * Review 2 of cluster mode's fixes: a writer's repair of a dirty key (R6, `available`) whose slot left
 * its node follows the MOVED to the slot's owner and counts as delivered there (node.ts
 * `invalidateMoved`). The stream path checks the node that redirected for keys of the slot it lost
 * (protocol.ts `invalidateStray`, ARCHITECTURE.md "A slot with no owner"); the repair does not. So when
 * the slot was taken from A with `CLUSTER DELSLOTS` (A keeps its keys) and given to B, the writer's
 * repair of A reaches B (which never held the key), A is trusted again with nothing owed, and once the
 * slot is back on A its entry of before, tagged with A's unchanged epoch, is served: older than the
 * acknowledged write whose repair the writer counted delivered (G1, available; R6 "delivered before the
 * node is trusted").
 *
 * With the fix (node.ts `strayHeld`) the key stays owed to A, which stays down for the writer, until
 * the slot is back on A, where the repair lands: the reader is checked after it has (available's G1
 * holds from the repair on).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RedisServer } from '../helpers/redis-server.ts';
import { call, relearn, useClusterFixture, warm } from '../helpers/cluster-fixture.ts';
import { slotOf } from '../../lib/cache/slots.ts';

type Key = { customerId: string; orderId: string };
type Ranges = [number, number, [string, number]][];

describe("review 2: cluster mode, a writer's dirty-key repair redirected away from a node that kept the slot's keys", () => {
  const { stack, cluster, container, until, ownerEverywhere } = useClusterFixture({ replicas: 0 });

  async function movedAnswers(server: RedisServer): Promise<number> {
    const info = String(await call(server, 'INFO', 'errorstats'));
    return Number(/errorstat_MOVED:count=(\d+)/.exec(info)?.[1] ?? '0');
  }

  test("G1, available: the repair owed to A counts as delivered at B while A keeps the slot's key", async () => {
    // The writer connects as its own user, so that A can refuse it alone (R6: a writer that cannot reach
    // a node the readers reach).
    for (const s of cluster.servers) await call(s, 'ACL', 'SETUSER', 'writer', 'on', '>pw', '~*', '&*', '+@all');
    const url = new URL(cluster.primaries[0]!.url);
    url.username = 'writer';
    url.password = 'pw';
    const writer = container({ CACHE_NODES: url.href, CACHE_ALLOW_PLAIN_AUTH: '1', CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const [a, b, c] = [cluster.primaries[0]!, cluster.primaries[1]!, cluster.primaries[2]!];
    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as Ranges;
    const ofA = ranges.filter((r) => r[2][1] === a.port);
    const lowest = Math.min(...ofA.map((r) => r[0]));
    let key: Key | undefined;
    for (let i = 0; key === undefined; i++) {
      const k = { customerId: `moved-repair-${i}`, orderId: 'o' };
      const s = slotOf(writer.resolve('orders', k).redisKey);
      if (s !== lowest && ofA.some(([from, to]) => from <= s && s <= to)) key = k;
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

    // The slot is taken from A (A keeps its keys) and given to B; then A lets the writer in again.
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'DELSLOTS', slot);
    await call(b, 'CLUSTER', 'ADDSLOTS', slot);
    await ownerEverywhere(slot, b);
    const repaired = () => nodeAt(a.port)?.status === 'up' && writer.health().every((h) => h.dirtyKeys === 0);
    const movedBefore = await movedAnswers(a);
    await call(a, 'ACL', 'SETUSER', 'writer', '+@all');
    // The writer's repair of A while the slot is on B: A answers MOVED and B takes the invalidation. It
    // was counted delivered there (A trusted with nothing owed); with the fix the key stays owed to A,
    // which holds keys of the slot and refuses the check's invalidation too (a second MOVED).
    await until('the writer tried its repair of A', async () => {
      await writer.checkHealth();
      return repaired() || (await movedAnswers(a)) >= movedBefore + 2;
    });
    const heldByA = Number(await call(a, 'CLUSTER', 'COUNTKEYSINSLOT', slot));

    // The slot goes back to A (B's keys of it, none, migrated), the usual resharding.
    const idA = String(await call(a, 'CLUSTER', 'MYID'));
    const idB = String(await call(b, 'CLUSTER', 'MYID'));
    await call(a, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', idB);
    await call(b, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', idA);
    for (const k of (await call(b, 'CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[]) {
      await call(b, 'MIGRATE', '127.0.0.1', a.port, k, 0, 5000);
    }
    for (const s of [a, b, c]) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', idA);
    await ownerEverywhere(slot, a);
    await relearn(reader);
    // available: what the writer owes A is served there until its repair lands (G1, "until a repair
    // lands"); the repair still owed lands now that the slot is back on A.
    await until('the writer repaired A', async () => {
      await writer.checkHealth();
      return repaired();
    });

    const r = await reader.get('orders', key);
    assert.equal(
      r.item?.n,
      2,
      `the reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged; the writer counted its repair of A delivered while A held ${heldByA} key(s) of the slot: ${JSON.stringify(writer.health())}`,
    );
  });
});
