/**
 * Re-review of cluster mode's fixes (CONSISTENCY.md, "Adversarial review of cluster mode"): a primary
 * last verified a check interval ago or more is verified again before a read trusts its entries
 * (node.ts `verifyDue`, checked by protocol.ts `read` and `readMany` on entry). Two paths escape it:
 *
 * - a node in `starting` (after a probe over a new connection, for CACHE_START_CYCLES check intervals)
 *   is never verified in the background (node.ts `refresh` verifies only `up` nodes), so its last
 *   verification is that probe's, older than a check interval when `starting` ends;
 * - a reader waiting for another reader's fill (G5: `LEASE` answered `leased`, protocol.ts `missed`)
 *   polls `LEASE` with `trusted = node.readable`, and LEASE then answers any entry carrying the
 *   reader's tag. `verifyDue` is not asked there: the poll during which `starting` ends sends
 *   `trusted = 1` with the tag of that old verification.
 *
 * So a primary failed over and back while the reader's node was `starting` (each step longer than one
 * check interval after the reader's last verification, the reader not idle: it asks the node) serves
 * the entry the re-promoted primary kept, older than a write the interim primary acknowledged: G1
 * (available here; strict the same with two replicas, as in review-cluster-failback.test.ts), outside
 * the documented limit ("a failover and a failback both within one check interval of this client's
 * last verification"). The reader's state machine runs on a hand-driven clock (the test seam), so the
 * end of `starting` falls in the waiting reader's poll, deterministically.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Gate, manualClock } from '../helpers/stack.ts';
import { call, info, useClusterFixture, warm, type OrderKey as Key, type SlotRanges as Ranges } from '../helpers/cluster-fixture.ts';
import type { ProtocolHooks } from '../../lib/cache/protocol.ts';
import { slotOf } from '../../lib/cache/slots.ts';

describe('re-review: cluster mode, a lease wait across the end of `starting` after a failover and back', () => {
  const { cluster, container, until, addUser } = useClusterFixture({ replicas: 1, nodeTimeoutMs: 5000 });

  test('G1, available: the poll during which `starting` ends trusts the tag of a verification older than a check interval', async () => {
    const a = cluster.primaries[0]!;
    const b = cluster.replicas[0]!;
    assert.match(await info(b), new RegExp(`master_port:${a.port}\\r`));
    // The reader connects as its own user, so that A can refuse its reads alone (a failed command: the
    // node goes down, and its probe over the same connection makes it `starting`).
    const url = await addUser('reader', 'pw');
    const clock = manualClock();
    const gate = new Gate();
    const polling = new Gate();
    let redisKey = '';
    let held = false;
    const hooks: ProtocolHooks = {
      afterLease: async (k) => {
        if (k !== redisKey || held) return;
        held = true;
        await gate.hold();
      },
      leaseWait: (k) => {
        if (k === redisKey) void polling.hold();
      },
    };
    // Both seeded with A, checked every second (the fixture's container).
    const writer = container({ CACHE_WRITE_POLICY: 'available' });
    const reader = container(
      { CACHE_NODES: url, CACHE_ALLOW_PLAIN_AUTH: '1', CACHE_START_CYCLES: '2', CACHE_LEASE_MS: '30000' },
      { clock: clock.now, hooks },
    );
    await Promise.all([warm(writer), warm(reader)]);

    const ranges = (await call(a, 'CLUSTER', 'SLOTS')) as Ranges;
    const ofA = ranges.filter((r) => r[2][1] === a.port);
    const onA = (prefix: string): Key => {
      for (let i = 0; ; i++) {
        const k = { customerId: `${prefix}-${i}`, orderId: 'o' };
        const s = slotOf(writer.resolve('orders', k).redisKey);
        if (ofA.some(([lo, hi]) => lo <= s && s <= hi)) return k;
      }
    };
    const key = onA('starting');
    const other = onA('other');
    redisKey = reader.resolve('orders', key).redisKey;
    const nodeA = () => reader.health().find((h) => h.address.endsWith(`:${a.port}`));

    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await reader.get('orders', key)).cache, 'hit', 'the reader hits n=1 on A');
    await call(a, 'WAIT', 1, 2000);

    // 1. A refuses one read of the reader: A is down for it; its probe (over the same connection) makes it `starting`.
    await call(a, 'ACL', 'SETUSER', 'reader', '-hget');
    await reader.get('orders', other);
    await call(a, 'ACL', 'SETUSER', 'reader', '+@all');
    assert.equal(nodeA()?.status, 'down', `A is down for the reader: ${JSON.stringify(reader.health())}`);
    clock.advance(1000);
    await reader.checkHealth();
    assert.equal(nodeA()?.status, 'starting', `A is starting for the reader: ${JSON.stringify(reader.health())}`);

    // 2. A failover: B primary, A its replica; A then stops receiving B's stream.
    await call(b, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    await until('B primary, A linked to it', async () => {
      const [ib, ia] = [await info(b), await info(a)];
      return ib.includes('connected_slaves:1') && ia.includes(`master_port:${b.port}\r`) && ia.includes('master_link_status:up');
    });
    await call(a, 'CONFIG', 'SET', 'masteruser', 'review-nobody');
    await call(a, 'CONFIG', 'SET', 'masterauth', 'wrong');
    await call(b, 'CLIENT', 'KILL', 'TYPE', 'replica');
    await until('A lost its link to B', async () => (await info(a)).includes('master_link_status:down'));

    // 3. A write acknowledged by B (the interim primary), which A never receives.
    await writer.put('orders', { ...key, n: 2 });
    assert.equal((await writer.get('orders', key)).item?.n, 2, 'the writer reads its own write');

    // 4. A promoted again, holding n=1 under the tag of the reader's last verification.
    await call(a, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    await until('A primary again', async () => (await info(a)).includes('role:master'));
    await call(a, 'CONFIG', 'SET', 'masteruser', '');
    await call(a, 'CONFIG', 'SET', 'masterauth', '');

    // 5. The reader (A still `starting` for it): a first read takes the lease (held before its DynamoDB
    //    read), a second waits for that fill; then `starting` ends (two check intervals on its clock).
    const first = reader.get('orders', key);
    await gate.reached;
    const second = reader.get('orders', key);
    await polling.reached;
    clock.advance(2000);
    const r = await second;
    gate.open();
    await first;
    assert.equal(r.item?.n, 2, `the waiting reader was served n=${r.item?.n} (${r.cache}) after n=2 was acknowledged`);
  });
});
