/**
 * Faults nobody designed for (an outside review of the protocol): each test reproduces one defect
 * against real redis-server processes and DynamoDB Local, and fails on the protocol before its fix.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { eventually, manualClock, startStack, type TestStack } from '../helpers/stack.ts';
import { endSettle, plantEntry, streamRecord } from '../helpers/faults.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import { ItemCache } from '../../lib/item-cache.ts';
import { fenceTimeMs, loadConfig } from '../../lib/config.ts';
import { sealKey } from '../../lib/cache/scripts.ts';
import { CacheUnavailableError, invalidateStreamRecords, StoreUnavailableError, VersionMismatchError } from '../../lib/index.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Keeps the event loop busy for `ms`, as a starved Lambda container (or a long GC) would. */
function starve(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy
  }
}

/** The run_id a redis-server reports. */
async function runIdOf(server: RedisServer): Promise<string> {
  return server.runId();
}

describe('faults nobody designed for', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => stack.stop());

  test('defect 1: an orphaned writer fence (a begin that ran after its caller gave up) ends on its own, even under steady writes', async () => {
    // A short commit deadline makes the fence short: 1500 + 500 + 1000 ms.
    const env = { DYNAMODB_DEADLINE_MS: '1500', CACHE_WRITE_POLICY: 'strict' };
    const writer = stack.cache(env);
    const key = { userId: 'orphan' };
    await writer.put('users', { ...key, n: 0 });
    const rk = writer.resolve('users', key);
    const server = stack.serverOf(writer, rk);
    // The node stalls: the write's begin times out and the strict write is refused, but the begin is
    // in the node's socket and runs when it wakes: a fence nobody will lower.
    server.pause();
    try {
      await assert.rejects(writer.put('users', { ...key, n: 1 }), CacheUnavailableError);
    } finally {
      server.resume();
    }
    const others = [stack.cache(env), stack.cache(env)];
    // Steady writes (every 100 ms, far more often than the fence time) from other containers.
    let n = 1;
    let hit = false;
    const end = Date.now() + 15_000;
    while (!hit && Date.now() < end) {
      const w = others[n % 2] as ItemCache;
      await w.put('users', { ...key, n: ++n });
      const r = await (others[(n + 1) % 2] as ItemCache).get('users', key);
      assert.equal(r.item?.n, n, 'every read sees the last acknowledged write');
      hit = r.cache === 'hit';
      await sleep(100);
    }
    assert.ok(hit, 'the key is cached again once the orphaned fence has expired');
  });

  test('defect 2: a reply that arrived while the process was starved of CPU is not rejected by its expired timer', async () => {
    const c = stack.cache();
    const key = { userId: 'starved' };
    await c.put('users', { ...key, v: 1 });
    assert.equal((await c.get('users', key)).cache, 'hit');
    const rk = c.resolve('users', key);
    const pending = c.get('users', key);
    await new Promise((r) => setImmediate(r)); // the read has left (the socket is uncorked)
    starve(Number(stack.env.CACHE_COMMAND_TIMEOUT_MS) + 300); // its deadline passes; its reply waits in the socket
    const r = await pending;
    assert.equal(r.cache, 'hit');
    assert.equal(c.nodeFor(rk)!.status, 'up');
  });

  test('defect 2: a cold start whose connection takes longer than the command timeout costs a moment, not the check interval', async () => {
    const key = { userId: 'cold-slow' };
    const probe = stack.cache();
    await probe.put('users', { ...key, v: 1 });
    const server = stack.serverOf(probe, probe.resolve('users', key));
    const clock = manualClock();
    server.pause(); // the connection is accepted, its ready check waits
    let c: ItemCache;
    try {
      c = stack.cache({}, { clock: clock.now });
      assert.equal((await c.get('users', key)).cache, 'bypass');
      const node = c.nodeFor(c.resolve('users', key))!;
      assert.equal(node.status, 'down');
      clock.advance(100);
      void node.status; // a re-probe while the connection is still being made fails
      assert.equal(await node.probing, false);
    } finally {
      server.resume();
    }
    const node = c.nodeFor(c.resolve('users', key))!;
    await eventually('connected', async () => node.client.status === 'ready');
    clock.advance(200); // the next re-probe: soon, not after the check interval
    void node.status;
    assert.equal(await node.probing, true);
    assert.equal(node.status, 'up');
    assert.equal((await c.get('users', key)).item?.v, 1);
  });

  for (const policy of ['strict', 'available'] as const) {
    test(`defect 2 (${policy}): a node that stalled once is trusted again as soon as it answers; writes are not refused nor left dirty`, async () => {
      const clock = manualClock();
      const c = stack.cache({ CACHE_WRITE_POLICY: policy }, { clock: clock.now }); // default 60 s check interval
      const other = stack.cache();
      const key = { userId: `stall-${policy}` };
      await c.put('users', { ...key, v: 1 });
      const rk = c.resolve('users', key);
      const node = c.nodeFor(rk)!;
      const server = stack.serverOf(c, rk);
      server.pause();
      try {
        assert.equal((await c.get('users', key)).cache, 'bypass');
      } finally {
        server.resume();
      }
      assert.equal(node.status, 'down');
      clock.advance(100); // the first re-probe of a node that only did not answer is due
      const w = await c.put('users', { ...key, v: 2 });
      assert.equal(w.version, 2, 'the write was not refused');
      assert.equal(node.status, 'up', 'same connection, same run_id, nothing owed: trusted again at once');
      assert.equal(node.dirty.size, 0, 'the write reached the node');
      assert.equal((await other.get('users', key)).item?.v, 2);
      assert.equal((await c.get('users', key)).cache, 'hit');
    });
  }

  // Defect 3 (a shard-map change serving stale entries): test/integration/shard-maps.test.ts.

  test('defect 4: a seal that is gone (evicted) never flushes a node; it costs a settle at most', async () => {
    const warm = stack.cache();
    const keys = Array.from({ length: 20 }, (_, i) => ({ userId: `sealed-${i}` }));
    await warm.get('users', keys[0]!);
    await endSettle(warm.nodeFor(warm.resolve('users', keys[0]!))!); // an earlier test's restart may still settle
    for (const k of keys) await warm.put('users', { ...k, v: 1 });
    const rk = warm.resolve('users', keys[0]);
    const node = warm.nodeFor(rk)!;
    const server = stack.serverOf(warm, rk);
    const admin = server.client();
    try {
      const runId = await runIdOf(server);
      const before = await admin.dbsize();
      await admin.del(sealKey(runId)); // what allkeys-lru does to an idle key
      const cold = stack.cache();
      const r = await cold.get('users', keys[0]);
      assert.equal(r.item?.v, 1);
      assert.equal(await admin.dbsize(), before, 'the cold container flushed nothing');
      assert.ok((await admin.hget(rk.redisKey, 'd')) !== null, 'the entry is still there');
      assert.equal(cold.nodeFor(rk)!.health().status, 'settling', 'a lost seal settles the epoch (writers may be in flight)');
      // The warm container meets the missing seal at its next miss (here: the seal was already
      // re-made by the cold one), and its hits never stopped.
      assert.equal((await warm.get('users', keys[0])).cache, 'hit');
      assert.equal(node.status, 'up');
    } finally {
      await admin.quit();
    }
  });

  for (const policy of ['allkeys-lru', 'volatile-lru'] as const) {
    test(`defect 4 (${policy}): under memory pressure the seal survives or is re-made, no node is emptied, and reads stay exact`, async () => {
      const server = await RedisServer.start();
      const admin = server.client();
      try {
        const env = { CACHE_NODES: server.url };
        const warm = stack.cache(env);
        const big = 'x'.repeat(4000);
        await warm.put('users', { userId: 'pressure-0', v: 0, big });
        const runId = await runIdOf(server);
        await admin.config('SET', 'maxmemory-policy', policy);
        await admin.config('SET', 'maxmemory', String(3 * 1024 * 1024));
        // A working set larger than memory, written and read through the library.
        for (let i = 1; i <= 1500; i++) {
          await warm.put('users', { userId: `pressure-${i}`, v: i, big });
          if (i % 10 === 0) await warm.get('users', { userId: `pressure-${i}` });
        }
        const evicted = Number(/evicted_keys:(\d+)/.exec(await admin.info('stats'))?.[1] ?? 0);
        assert.ok(evicted > 0, 'the node evicted keys');
        if (policy === 'volatile-lru')
          assert.equal(await admin.exists(sealKey(runId)), 1, 'a key without TTL is never a volatile-* victim');
        const beforeCold = await admin.dbsize();
        const cold = stack.cache(env);
        for (let i = 1490; i <= 1500; i++) assert.equal((await cold.get('users', { userId: `pressure-${i}` })).item?.v, i);
        assert.ok((await admin.dbsize()) >= beforeCold - 20, 'no flush');
        assert.equal(await admin.exists(sealKey(runId)), 1, 'the epoch is sealed');
      } finally {
        await admin.quit();
        await server.stop();
      }
    });
  }

  test('defect 4 (volatile-lru): a settle survives memory pressure (the settle is no key with a TTL)', async () => {
    const server = await RedisServer.start();
    try {
      const env = { CACHE_NODES: server.url };
      const warm = stack.cache(env);
      const key = { userId: 'settle-pressure' };
      await warm.put('users', { ...key, v: 1 });
      const node = warm.nodeFor(warm.resolve('users', key))!;
      await server.restart({ keepData: true }); // back with data under a new run_id: the epoch settles
      await eventually('the warm container sealed the new epoch', async () => node.health().status === 'settling');
      const admin = server.client();
      try {
        await admin.config('SET', 'maxmemory-policy', 'volatile-lru');
        await admin.config('SET', 'maxmemory', String(3 * 1024 * 1024));
        // Memory pressure from keys with a TTL (volatile-* evicts only those), far more than fits.
        const big = 'y'.repeat(8000);
        for (let i = 0; i < 800; i++) await admin.set(`filler-${i}`, big, 'PX', 600_000).catch(() => undefined);
        const evicted = Number(/evicted_keys:(\d+)/.exec(await admin.info('stats'))?.[1] ?? 0);
        assert.ok(evicted > 0, 'the node evicted keys');
      } finally {
        await admin.quit();
      }
      await warm.get('users', key);
      assert.equal((await warm.get('users', key)).cache, 'miss', 'still settling: nothing was filled');
    } finally {
      await server.stop();
    }
  });

  test('defect 5: the Streams consumer keeps no dirty keys (parking and retries make its repair durable); the overflow flush settles', async () => {
    const consumer = stack.cache({ CACHE_DIRTY_KEYS_MAX: '1' });
    const key = { userId: 'overflow' };
    const rk = consumer.resolve('users', key);
    const server = stack.serverOf(consumer, rk);
    server.pause();
    try {
      const failed = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '100')]);
      assert.equal(failed.batchItemFailures.length, 1);
    } finally {
      server.resume();
    }
    assert.equal(consumer.nodeFor(rk)!.dirty.size, 0, 'the consumer left no dirty key');
    // A container whose writes could not reach the node past its limit: the repair empties it, and
    // settles it like a new epoch, since writers' fences went with the data.
    const clock = manualClock();
    const writer = stack.cache({ CACHE_DIRTY_KEYS_MAX: '1' }, { clock: clock.now });
    const keys = stack.usersOnDistinctServers(writer, 'overflow-w', 1);
    const sameNode = [keys[0]!.key, ...Array.from({ length: 40 }, (_, i) => ({ userId: `overflow-w-${i + 10}` }))].filter(
      (k) => stack.serverOf(writer, writer.resolve('users', k)) === keys[0]!.server,
    );
    await writer.put('users', { ...sameNode[0]!, v: 0 });
    const node = writer.nodeFor(writer.resolve('users', sameNode[0]!))!;
    keys[0]!.server.pause();
    try {
      for (const k of sameNode.slice(0, 3)) await writer.put('users', { ...k, v: 1 });
    } finally {
      keys[0]!.server.resume();
    }
    assert.equal(node.dirty.needsFlush, true);
    clock.advance(60_000);
    void node.status;
    assert.equal(await node.probing, true);
    assert.equal(node.health().status === 'settling' || node.status === 'starting', true);
    const reader = stack.cache();
    await reader.get('users', sameNode[0]!);
    assert.equal((await reader.get('users', sameNode[0]!)).cache, 'miss', 'the emptied node fills nothing while it settles');
    await endSettle(reader.nodeFor(reader.resolve('users', sameNode[0]!))!);
    await reader.get('users', sameNode[0]!);
    assert.equal((await reader.get('users', sameNode[0]!)).cache, 'hit');
  });

  test('defect 6: DYNAMODB_TIMEOUT_MS and DYNAMODB_DEADLINE_MS are enforced against a DynamoDB that accepts and never answers', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    try {
      const perAttempt = new ItemCache({
        config: loadConfig({ ...stack.env, DYNAMODB_ENDPOINT: endpoint, DYNAMODB_TIMEOUT_MS: '300', DYNAMODB_MAX_ATTEMPTS: '1' }),
        tables: stack.tables,
      });
      const whole = new ItemCache({
        config: loadConfig({ ...stack.env, DYNAMODB_ENDPOINT: endpoint, DYNAMODB_TIMEOUT_MS: '60000', DYNAMODB_DEADLINE_MS: '400' }),
        tables: stack.tables,
      });
      try {
        await assert.rejects(perAttempt.get('users', { userId: 'black-hole' }), StoreUnavailableError);
        await assert.rejects(whole.put('users', { userId: 'black-hole', v: 1 }), StoreUnavailableError);
      } finally {
        await perAttempt.close();
        await whole.close();
      }
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
    // The fence the writers raise rests on that bound, and with the defaults a settle ends within about 10 s.
    assert.ok(fenceTimeMs(loadConfig({ CACHE_MODE: 'off' })) <= 10_000);
  });

  test('defect 7: a key that goes dirty while the probe repairs the others is repaired before the node is trusted', async () => {
    const clock = manualClock();
    const c = stack.cache({}, { clock: clock.now });
    const [a, b] = [{ userId: 'dirty-a' }, { userId: 'dirty-b' }];
    const rka = c.resolve('users', a);
    const node = c.nodeFor(rka)!;
    const server = stack.serverOf(c, rka);
    let k = 0;
    let bKey = { userId: 'dirty-b-0' };
    while (stack.serverOf(c, c.resolve('users', bKey)) !== server) bKey = { userId: `dirty-b-${++k}` };
    void b;
    const rkb = c.resolve('users', bKey);
    await c.put('users', { ...a, v: 1 });
    await c.put('users', { ...bKey, v: 1 });
    await plantEntry(c, rkb, '{"userId":{"S":"stale"}}');
    server.pause();
    try {
      await c.put('users', { ...a, v: 2 }); // available: committed, key dirty, node down
    } finally {
      server.resume();
    }
    // While the probe repairs a (after it took what it owes), a write's end on b fails (another request's).
    const snapshot = node.dirty.snapshot.bind(node.dirty);
    let first = true;
    node.dirty.snapshot = () => {
      const todo = snapshot();
      if (first) node.dirty.add(rkb.redisKey, 'end-write: failed during the repair');
      first = false;
      return todo;
    };
    clock.advance(60_000);
    void node.status;
    assert.equal(await node.probing, true);
    assert.equal(node.dirty.size, 0, 'nothing owed once trusted');
    assert.equal(await node.client.hget(rkb.redisKey, 'd'), null, 'b was repaired before the node was trusted');
  });

  test('defect 8: a probe replaces a black-holed connection, so a node reachable on a new one is used again', async () => {
    const probe = stack.cache();
    const key = { userId: 'black-holed' };
    const rk = probe.resolve('users', key);
    const server = stack.serverOf(probe, rk);
    const proxy = await TcpProxy.start(server.port);
    try {
      const clock = manualClock();
      const c = stack.cache({ CACHE_NODES: stack.env.CACHE_NODES.replace(server.url, proxy.url) }, { clock: clock.now });
      await c.put('users', { ...key, v: 1 });
      const node = c.nodeFor(rk)!;
      proxy.silenceExisting(); // the socket stays open and mute; a new connection would work
      assert.equal((await c.get('users', key)).cache, 'bypass');
      assert.equal(node.status, 'down');
      await eventually('a new connection replaces the silent one', async () => {
        clock.advance(60_000);
        void node.status;
        await node.probing;
        return node.status !== 'down';
      });
      assert.equal(node.status, 'starting', 'a new connection goes through starting');
      assert.equal((await c.get('users', key)).item?.v, 1);
    } finally {
      await proxy.stop();
    }
  });

  test('defect 9: a restarted node shows as settling in /health, and its settle lasts the fence time (seconds, not a minute)', async () => {
    const clock = manualClock();
    const c = stack.cache({ CACHE_CHECK_INTERVAL_SECONDS: '1', CACHE_START_CYCLES: '1' }, { clock: clock.now });
    const key = { userId: 'restarted' };
    await c.put('users', { ...key, v: 1 });
    const rk = c.resolve('users', key);
    const node = c.nodeFor(rk)!;
    const server = stack.serverOf(c, rk);
    await server.kill();
    await server.startAgain();
    await eventually('reconnected', async () => node.client.status === 'ready');
    await eventually('verified', async () => node.health().status === 'settling');
    const seal = await node.client.get(node.sealKeyFor('')); // '<until>:<sealed at>'
    const [until, sealedAt] = (seal ?? '').split(':').map(Number) as [number, number];
    assert.equal(until - sealedAt, fenceTimeMs(c.config), 'the settle lasts the fence time');
    assert.ok(fenceTimeMs(c.config) <= 10_000);
    clock.advance(fenceTimeMs(c.config));
    assert.notEqual(node.health().status, 'settling');
  });

  test('hostile input 4: a write DynamoDB definitely refuses changes neither the item nor the cached entry', async () => {
    // A stack of its own: the earlier tests of this file restart nodes and leave shard maps live,
    // which a new container may have to wait out before it stores (it failed clean-clone CI runs twice).
    const own = await startStack();
    try {
      const key = { userId: 'refused' };
      const c = own.cache();
      await c.put('users', { ...key, v: 1 });
      await eventually('v1 is cached', async () => (await c.get('users', key)).cache === 'hit', 10_000);
      await assert.rejects(c.put('users', { ...key, v: 2 }, { ifVersion: 7 }), VersionMismatchError);
      await assert.rejects(c.delete('users', key, { ifVersion: 7 }), VersionMismatchError);
      await assert.rejects(c.update('users', key, { set: { v: 3 } }, { ifVersion: 7 }), VersionMismatchError);
      const r = await c.get('users', key);
      assert.equal(r.cache, 'hit', 'the entry was put back');
      assert.equal(r.item?.v, 1);
      // A missing item's absent entry too.
      const gone = { userId: 'refused-missing' };
      await eventually('the absent entry is a hit', async () => (await c.get('users', gone)).cache === 'hit', 10_000);
      await assert.rejects(c.update('users', gone, { set: { v: 1 } }));
      assert.equal((await c.get('users', gone)).cache, 'hit');
      const raw = await own.dynamo.send(new GetItemCommand({ TableName: `${own.prefix}users`, Key: { userId: { S: 'refused' } } }));
      assert.equal(raw.Item?._version?.N, '1');
    } finally {
      await own.stop();
    }
  });
});
