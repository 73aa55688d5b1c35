/**
 * Outside review (review4) of 136a9cd (every deadline on lib/clock.ts deadlineClock) against the
 * cluster reroute of 6083a1c: the rerouted read still takes its deadline from the wall clock.
 *
 * protocol.ts `read`: a hit read whose node was retired from the topology while it waited goes to the
 * key's owner with `Date.now() + commandTimeoutMs` (so do `missed`'s rerouted lease and `readMany`'s
 * second ask), and `before`/`within` (lib/cache/deadline.ts) compare that deadline with
 * deadlineClock(), the monotonic clock. A wall clock ahead of the monotonic one by J (an NTP step
 * forward after the process started) gives the rerouted lease J on top of the command timeout.
 *
 * The interleaving (a cluster of three primaries, no replicas; the container's state machine on a
 * manual clock, so it learns the topology only when told):
 * 1. W, warm, caches the key on its primary A (not the first primary W asks for the topology, B).
 * 2. Every slot of A is given to B (DELSLOTSRANGE everywhere, ADDSLOTSRANGE on B): A is to be retired.
 * 3. A hangs (SIGSTOP); B takes no write command (CLIENT PAUSE WRITE: the lease script waits, reads
 *    and CLUSTER SLOTS are answered).
 * 4. W's wall clock steps forward 20 s (injected by shifting `Date.now`, as an NTP step).
 * 5. W reads the key: its hit read waits on A. W learns the topology (from B): A is retired and
 *    closed, the read goes on to the key's owner B, whose lease waits.
 * Expected (G3): the read costs about the command timeout (twice here: A's read, then B's lease) and
 * is served from DynamoDB. Observed: B's lease waits the 20 s step on top of its timeout.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, keyOn, relearn, useClusterFixture, warm, type SlotRanges } from '../helpers/cluster-fixture.ts';
import { manualClock } from '../helpers/stack.ts';
import { slotOf } from '../../lib/cache/slots.ts';

const COMMAND_TIMEOUT_MS = 1000;
const STEP_MS = 20_000;

describe('review4: cluster mode, a rerouted read on a wall clock stepped forward', () => {
  const { cluster, container, ownerEverywhere } = useClusterFixture({ replicas: 0 });
  const paused: (() => Promise<void>)[] = [];

  test('G3: a read rerouted from a retired node to a hung owner costs about the command timeout, whatever the wall clock did', async () => {
    const clock = manualClock();
    const w = container({ CACHE_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS), CACHE_WRITE_POLICY: 'available' }, { clock: clock.now });
    await warm(w);
    // Past every settle; each node verified again at the (then frozen) manual time.
    clock.advance(60_000);
    await relearn(w);
    const first = w.shards.nodes[0]!;
    const b = cluster.primaries.find((s) => first.address.endsWith(`:${s.port}`))!;
    const a = cluster.primaries.find((s) => s !== b)!;
    const key = await keyOn(w, a, 'reroute-clock');
    await w.put('orders', { ...key, total: 1 });
    for (let i = 0; i < 100 && (await w.get('orders', key)).cache !== 'hit'; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await w.get('orders', key)).cache, 'hit', 'total=1 is cached on A');
    for (const n of w.shards.nodes) assert.ok(n.readable, `${n.address} is up and verified`);

    // 2. A's slots to B.
    const ranges = ((await call(a, 'CLUSTER', 'SLOTS')) as SlotRanges).filter(([, , p]) => p[1] === a.port);
    for (const s of cluster.primaries) for (const [start, end] of ranges) await call(s, 'CLUSTER', 'DELSLOTSRANGE', start, end);
    for (const [start, end] of ranges) await call(b, 'CLUSTER', 'ADDSLOTSRANGE', start, end);
    await ownerEverywhere(slotOf(w.resolve('orders', key).redisKey), b);

    // 3. A hangs; B takes no write.
    a.pause();
    paused.push(async () => a.resume());
    await call(b, 'CLIENT', 'PAUSE', String(STEP_MS * 3), 'WRITE');
    paused.push(async () => void (await call(b, 'CLIENT', 'UNPAUSE')));

    const realNow = Date.now;
    try {
      // 4. The wall clock steps forward.
      Date.now = () => realNow() + STEP_MS;
      // 5. The read waits on A; the topology answer (B's) retires A under it.
      const started = performance.now();
      const read = w.get('orders', key);
      await relearn(w);
      assert.ok(!w.shards.nodes.some((n) => n.address.endsWith(`:${a.port}`)), 'A is retired');
      const r = await read;
      const ms = performance.now() - started;
      Date.now = realNow;
      assert.equal(r.item?.total, 1, 'served from DynamoDB');
      assert.ok(ms < STEP_MS / 2, `the read took ${Math.round(ms)} ms with a command timeout of ${COMMAND_TIMEOUT_MS} ms (G3)`);
    } finally {
      Date.now = realNow;
      for (const undo of paused) await undo();
    }
  });
});
