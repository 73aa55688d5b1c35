/**
 * CACHE_MODE=cluster (ElastiCache cluster mode / Serverless): one node per primary of a real Redis
 * Cluster (three primaries, one replica each), with shards mode's guarantees per primary: a stall costs
 * only its keys, a restart or a promoted replica is a new epoch that settles, strict writes wait for a
 * replica, and keys follow their slot when it moves.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { manualClock } from '../helpers/stack.ts';
import type { RedisServer } from '../helpers/redis-server.ts';
import { call, useClusterFixture, warm, type OrderKey as Key, type SlotRanges } from '../helpers/cluster-fixture.ts';
import { streamRecord } from '../helpers/faults.ts';
import { logsDuring } from '../helpers/capture-logs.ts';
import { invalidateStreamRecords } from '../../lib/index.ts';
import { CacheUnavailableError, StoreUnavailableError } from '../../lib/errors.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

describe('cluster mode', () => {
  // A silent primary stays a primary for 5 s: the stalls below are shorter, and failovers are asked for.
  const { cluster, container, addUser } = useClusterFixture({ replicas: 1, nodeTimeoutMs: 5000 });

  /** The server this container sends `key` to now. */
  function nodeServer(cache: ItemCache, key: Key): RedisServer {
    const node = cache.nodeFor(cache.resolve('orders', key));
    const server = cluster.servers.find((s) => node?.address.endsWith(`:${s.port}`));
    if (!server) throw new Error(`no server of the cluster serves ${JSON.stringify(key)} (node ${node?.address})`);
    return server;
  }

  /** The primary that owns `key`'s slot, as the cluster itself says (CLUSTER SLOTS), not the library. */
  async function serverOf(cache: ItemCache, key: Key): Promise<RedisServer> {
    const slot = slotOf(cache.resolve('orders', key).redisKey);
    for (const s of cluster.servers) {
      const ranges = (await call(s, 'CLUSTER', 'SLOTS').catch(() => undefined)) as SlotRanges | undefined;
      const range = ranges?.find(([from, to]) => from <= slot && slot <= to);
      const owner = cluster.servers.find((x) => x.port === range?.[2][1]);
      if (owner) return owner;
    }
    throw new Error(`no server owns slot ${slot}`);
  }

  /** Keys `tag-0…` until `count` of them live on `server` and `count` elsewhere. */
  async function keysSplitBy(cache: ItemCache, tag: string, server: RedisServer, count: number): Promise<{ on: Key[]; off: Key[] }> {
    const on: Key[] = [];
    const off: Key[] = [];
    for (let i = 0; on.length < count || off.length < count; i++) {
      const key = { customerId: `${tag}-${i}`, orderId: 'o' };
      const list = (await serverOf(cache, key)) === server ? on : off;
      if (list.length < count) list.push(key);
    }
    return { on, off };
  }

  /** The server that replicates `primary` now (linked). */
  async function replicaOf(primary: RedisServer): Promise<RedisServer> {
    for (let i = 0; i < 200; i++) {
      for (const s of cluster.servers) {
        if (s === primary) continue;
        const info = String(await call(s, 'INFO', 'replication').catch(() => ''));
        if (info.includes(`master_port:${primary.port}\r`) && info.includes('master_link_status:up')) return s;
      }
      await sleep(50);
    }
    throw new Error(`no linked replica of ${primary.url}`);
  }

  /** A strict put, asked again while refused: under load a replica's acknowledgement can miss WAIT's bound (half the command timeout). */
  async function acceptedPut(cache: ItemCache, item: Key & { n: number }): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await cache.put('orders', item);
        return;
      } catch (err) {
        if (!(err instanceof CacheUnavailableError) || i >= 40) throw err;
        await sleep(50);
      }
    }
  }

  test('reads fill and hit, writes invalidate and store, across slots on three primaries, one node each', async () => {
    const cache = container();
    await warm(cache);
    const keys = Array.from({ length: 30 }, (_, i) => ({ customerId: `c${i}`, orderId: `o${i}` }));
    for (const k of keys) await cache.put('orders', { ...k, n: 1 });
    const first = await cache.batchGet('orders', keys);
    assert.equal(first.items.length, 30);
    assert.ok(first.sources.every((s) => s === 'hit'));
    await cache.update('orders', keys[3]!, { set: { n: 2 } });
    assert.equal((await cache.get('orders', keys[3]!)).item?.n, 2);
    await cache.delete('orders', keys[4]!);
    assert.equal((await cache.get('orders', keys[4]!)).item, undefined);
    const sizes = await Promise.all(cluster.primaries.map((s) => s.dbsize()));
    assert.ok(sizes.filter((n) => n > 0).length >= 2, `entries per primary: ${sizes.join(',')}`);
    // One node per primary, each with its own state.
    assert.equal(cache.shards.nodes.length, 3, `primaries known: ${cache.shards.nodes.map((n) => n.address).join(',')}`);
    assert.deepEqual(
      cache.health().map((h) => h.status),
      ['up', 'up', 'up'],
    );
  });

  test('stream invalidation and a miss-then-hit through the cluster', async () => {
    const cache = container();
    await warm(cache);
    const key = { customerId: 'cs', orderId: 'os' };
    await cache.put('orders', { ...key, n: 1 });
    const rk = cache.resolve('orders', key);
    const res = await invalidateStreamRecords(cache, [streamRecord(cache, rk, '1')]);
    assert.deepEqual(res.batchItemFailures, []);
    assert.equal((await cache.get('orders', key)).cache, 'miss');
    assert.equal((await cache.get('orders', key)).cache, 'hit');
  });

  test('R6: a write whose primary does not answer commits under available, keeps its key dirty; the stream record is retried; reads return the write once repaired', async () => {
    const writer = container({ CACHE_CHECK_INTERVAL_SECONDS: '60' });
    const consumer = container({ CACHE_CHECK_INTERVAL_SECONDS: '60' });
    const other = container({ CACHE_CHECK_INTERVAL_SECONDS: '60' });
    await Promise.all([warm(writer), warm(consumer), warm(other)]);
    const key = { customerId: 'r6-cluster', orderId: 'o' };
    const rk = writer.resolve('orders', key);
    const primary = await serverOf(writer, key);
    await writer.put('orders', { ...key, n: 1 });
    assert.equal((await other.get('orders', key)).cache, 'hit');
    primary.pause();
    try {
      const { result, logs } = await logsDuring(() => writer.put('orders', { ...key, n: 2 }));
      assert.equal(result.version, 2, 'the write committed and was acknowledged');
      const dirty = logs.find((l) => l.message === 'CACHE_DIRTY_DATA');
      assert.ok(dirty, 'the dirty key was logged');
      assert.equal(dirty.itemKey, rk.redisKey);
      assert.equal(writer.nodeFor(rk)!.dirty.has(rk.redisKey), true);
      // The stream record cannot be applied either: reported, so Lambda retries it.
      const failed = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '300')]);
      assert.deepEqual(failed.batchItemFailures, [{ itemIdentifier: '300' }]);
    } finally {
      primary.resume();
    }
    // Lambda's retry of the record: the consumer probes the primary itself and applies it.
    let retried = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '300')]);
    for (let i = 0; i < 40 && retried.batchItemFailures.length > 0; i++) {
      await sleep(50);
      retried = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '300')]);
    }
    assert.deepEqual(retried.batchItemFailures, []);
    assert.equal((await other.get('orders', key)).item?.n, 2);
    // The writer's own recovery repairs its dirty key before it trusts the primary again.
    const node = writer.nodeFor(rk)!;
    for (let i = 0; i < 200 && (node.dirty.size > 0 || node.health().status === 'down'); i++) {
      await writer.checkHealth();
      if (node.dirty.size > 0 || node.health().status === 'down') await sleep(25);
    }
    assert.equal(node.dirty.size, 0, 'the dirty key was repaired');
    assert.equal((await writer.get('orders', key)).item?.n, 2);
  });

  test('a stalled primary costs only its own keys: other keys still hit and strict writes of them are accepted', async () => {
    // Strict waits for a replica within half the command timeout: 750 ms here, so that a busy 2-core
    // machine's replica lag is not taken for a lost replica (the paused-replica test covers that).
    const cache = container({ CACHE_WRITE_POLICY: 'strict', CACHE_CHECK_INTERVAL_SECONDS: '60', CACHE_COMMAND_TIMEOUT_MS: '1500' });
    await warm(cache);
    const stalled = cluster.primaries[1]!;
    const { on, off } = await keysSplitBy(cache, 'stall', stalled, 3);
    for (const k of [...on, ...off]) await cache.put('orders', { ...k, n: 1 });
    for (const k of [...on, ...off]) assert.equal((await cache.get('orders', k)).cache, 'hit');
    stalled.pause();
    try {
      // The stalled primary's key: served from DynamoDB after the command timeout.
      const mine = await cache.get('orders', on[0]!);
      assert.equal(mine.cache, 'bypass');
      assert.equal(mine.item?.n, 1);
      // Keys of the other primaries: still hits, and strict writes of them are accepted.
      for (const k of off) assert.equal((await cache.get('orders', k)).cache, 'hit', `key on another primary: ${k.customerId}`);
      await cache.put('orders', { ...off[0]!, n: 2 });
      assert.equal((await cache.get('orders', off[0]!)).item?.n, 2);
      // A strict write of the stalled primary's key is refused, nothing written.
      await assert.rejects(cache.put('orders', { ...on[1]!, n: 2 }), CacheUnavailableError);
      const statuses = cache.health().map((h) => h.status);
      assert.deepEqual(
        statuses.filter((s) => s !== 'up'),
        ['down'],
        `one node down: ${statuses.join(',')}`,
      );
    } finally {
      stalled.resume();
    }
    // Back: a write probes it and is accepted.
    await cache.put('orders', { ...on[1]!, n: 3 });
    assert.equal((await cache.get('orders', on[1]!)).item?.n, 3);
  });

  test('R9: a primary restarted with its data is a new epoch: an entry of the dump is not trusted', async () => {
    const cache = container();
    await warm(cache);
    const primary = cluster.primaries[2]!;
    const [key] = (await keysSplitBy(cache, 'restart-data', primary, 1)).on;
    await cache.put('orders', { ...key!, n: 1 });
    assert.equal((await cache.get('orders', key!)).cache, 'hit');
    await primary.save(); // the dump holds the entry of n=1
    await cache.put('orders', { ...key!, n: 2 });
    await primary.kill();
    await primary.startAgain();
    for (let i = 0; i < 400; i++) {
      const r = await cache.get('orders', key!);
      assert.equal(r.item?.n, 2, `read ${i} after the restart served ${r.item?.n} (${r.cache})`);
      if (r.cache === 'hit') break;
      await sleep(25);
    }
    assert.equal((await cache.get('orders', key!)).cache, 'hit');
  });

  test('R9: a primary restarted without its data settles its new epoch before anything is filled', async () => {
    const cache = container();
    await warm(cache);
    const primary = cluster.primaries[0]!;
    const [key] = (await keysSplitBy(cache, 'restart-empty', primary, 1)).on;
    await cache.put('orders', { ...key!, n: 1 });
    await primary.restart({ keepData: false });
    let settling = false;
    for (let i = 0; i < 200 && !settling; i++) {
      await cache.get('orders', key!);
      settling = cache.health().some((h) => h.address.endsWith(`:${primary.port}`) && h.status === 'settling');
      if (!settling) await sleep(25);
    }
    assert.ok(settling, `health: ${JSON.stringify(cache.health())}`);
    // While it settles nothing is filled: reads miss.
    assert.equal((await cache.get('orders', key!)).cache, 'miss');
    assert.equal((await cache.get('orders', key!)).cache, 'miss');
  });

  test('a service that refuses INFO (run_id hidden): a marker of the data set stands in for the epoch; a primary that lost its data settles', async () => {
    // A user that may not run INFO, on every node, as a managed service may keep it from its clients.
    const url = await addUser('noinfo', 'secret', '-info');
    try {
      const cache = container({ CACHE_NODES: url, CACHE_ALLOW_PLAIN_AUTH: '1' });
      await warm(cache);
      const primary = cluster.primaries[1]!;
      const [key] = (await keysSplitBy(cache, 'noinfo', primary, 1)).on;
      await cache.put('orders', { ...key!, n: 1 });
      assert.equal((await cache.get('orders', key!)).cache, 'hit');
      await call(primary, 'FLUSHALL');
      let settling = false;
      for (let i = 0; i < 200 && !settling; i++) {
        await cache.checkHealth();
        settling = cache.health().some((h) => h.address.endsWith(`:${primary.port}`) && h.status === 'settling');
        if (!settling) await sleep(25);
      }
      assert.ok(settling, `health: ${JSON.stringify(cache.health())}`);
      assert.equal((await cache.get('orders', key!)).item?.n, 1);
    } finally {
      for (const s of cluster.servers) await call(s, 'ACL', 'DELUSER', 'noinfo').catch(() => undefined);
    }
  });

  test('G1, strict: a write whose invalidation no replica acknowledged is refused, and a failover after it serves nothing stale', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    const loose = container({ CACHE_WRITE_POLICY: 'available' });
    const reader = container();
    await Promise.all([warm(writer), warm(loose), warm(reader)]);
    const primary = await serverOf(writer, { customerId: 'lag-0', orderId: 'o' });
    const replica = await replicaOf(primary);
    const keys = (await keysSplitBy(writer, 'lag', primary, 2)).on;
    for (const k of keys) await writer.put('orders', { ...k, n: 1 });
    for (const k of keys) assert.equal((await reader.get('orders', k)).cache, 'hit');
    await writer.checkHealth(); // the primary's replica count, as its last verification saw it
    replica.pause();
    try {
      // strict: the fence never reaches the replica, so the write is refused before DynamoDB.
      await assert.rejects(writer.put('orders', { ...keys[0]!, n: 2 }), (err: unknown) => {
        assert.ok(err instanceof CacheUnavailableError);
        assert.match(err.message, /no replica/);
        return true;
      });
      assert.equal((await reader.get('orders', keys[0]!)).item?.n, 1);
      // available: acknowledged, though the replica has not got its invalidation.
      await loose.put('orders', { ...keys[1]!, n: 2 });
      await primary.kill();
    } finally {
      replica.resume();
    }
    await call(replica, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    // Every read from now on, through the failover: never n=1 for keys[1] (acknowledged n=2).
    let hit = false;
    for (let i = 0; i < 400 && !hit; i++) {
      const r = await reader.get('orders', keys[1]!);
      assert.equal(r.item?.n, 2, `read ${i} after the failover served ${r.item?.n} (${r.cache})`);
      hit = r.cache === 'hit';
      if (!hit) await sleep(25);
    }
    assert.ok(hit, 'the promoted replica serves hits again');
    assert.ok(
      reader.shards.nodes.some((n) => n.address.endsWith(`:${replica.port}`)),
      'the promoted replica is a node of the map',
    );
    // The old primary comes back as a replica of the new one.
    await primary.startAgain();
    // Linked again before the next test, whose strict writes wait for a replica (WAIT 1): one still in
    // its first sync refuses them.
    await replicaOf(replica);
  });

  test('G1: writers in flight while a primary is killed and its replica promoted: no stale read after an acknowledged write', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const primary = await serverOf(writer, { customerId: 'inflight-0', orderId: 'o' });
    const replica = await replicaOf(primary);
    const keys = (await keysSplitBy(writer, 'inflight', primary, 4)).on;
    // The replica caught up (the previous test's failover resynced it), or the first strict writes are
    // refused for want of its acknowledgement (WAIT 1 within half the command timeout).
    await call(primary, 'WAIT', 1, 5000);
    const acked = new Map<string, number>();
    for (const k of keys) {
      await acceptedPut(writer, { ...k, n: 0 });
      acked.set(k.customerId, 0);
    }
    let stop = false;
    let stale = 0;
    const problems: string[] = [];
    const dynamoFailures: string[] = [];
    const writers = keys.map(async (k) => {
      for (let n = 1; !stop; n++) {
        try {
          await writer.put('orders', { ...k, n });
          acked.set(k.customerId, n);
        } catch (err) {
          // DynamoDB Local beside a loaded second test lane can miss the deadline: a failed write, not acknowledged (lib/write-once.ts).
          if (err instanceof StoreUnavailableError) dynamoFailures.push(`put ${k.customerId} ${n}: ${err.message}`);
          else if (!(err instanceof CacheUnavailableError)) problems.push(String(err));
          await sleep(20);
        }
      }
    });
    const readers = keys.map(async (k) => {
      while (!stop) {
        const floor = acked.get(k.customerId)!;
        try {
          const r = await reader.get('orders', k);
          if ((r.item?.n as number) < floor) {
            stale++;
            problems.push(`${k.customerId}: read ${r.item?.n} (${r.cache}) after ${floor} was acknowledged`);
          }
        } catch (err) {
          if (err instanceof StoreUnavailableError) dynamoFailures.push(`get ${k.customerId}: ${err.message}`);
          else problems.push(`get ${k.customerId}: ${String(err)}`);
        }
        await sleep(5);
      }
    });
    await sleep(500);
    await primary.kill();
    await call(replica, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
    const atFailover = keys.map((k) => acked.get(k.customerId)!);
    const wentOn = (): boolean => keys.some((k, i) => acked.get(k.customerId)! > atFailover[i]!);
    // Four seconds of writes and reads across the failover, longer while no write was acknowledged on
    // the promoted replica yet (a loaded machine is slow to learn it).
    await sleep(4000);
    for (let i = 0; i < 400 && !wentOn(); i++) await sleep(25);
    stop = true;
    await Promise.all([...writers, ...readers]);
    assert.equal(stale, 0, problems.join('\n'));
    assert.deepEqual(problems, []);
    // Writes went on after the failover, on the promoted replica.
    assert.ok(
      wentOn(),
      `acknowledged at the failover ${atFailover.join(',')}, at the end ${keys.map((k) => acked.get(k.customerId)).join(',')}; DynamoDB failures: ${dynamoFailures.join('; ')}`,
    );
    await primary.startAgain();
    // Linked again before the next test, whose strict writes wait for a replica (WAIT 1): one still in
    // its first sync refuses them.
    await replicaOf(replica);
  });

  test('a slot migrated under load: writes follow it (ASK, then MOVED), reads never stale, migrated entries not trusted', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    const key = { customerId: 'migrating', orderId: 'o' };
    const rk = writer.resolve('orders', key);
    const slot = slotOf(rk.redisKey);
    const source = await serverOf(writer, key);
    const target = await serverOf(writer, (await keysSplitBy(writer, 'migration-target', source, 1)).off[0]!);
    // Both primaries' replicas caught up (an earlier test's failover resynced one), or the first strict
    // write is refused for want of a replica's acknowledgement (WAIT 1 within half the command timeout).
    for (const s of [source, target]) await call(s, 'WAIT', 1, 5000);
    await writer.put('orders', { ...key, n: 1 });
    // A hit once the source's epoch has settled (the previous test's failover may have promoted it).
    let cached = false;
    for (let i = 0; i < 400 && !cached; i++) {
      const r = await reader.get('orders', key);
      assert.equal(r.item?.n, 1);
      cached = r.cache === 'hit';
      if (!cached) await sleep(25);
    }
    assert.ok(cached, 'the key hits on its source before the migration');
    const [sourceId, targetId] = [String(await call(source, 'CLUSTER', 'MYID')), String(await call(target, 'CLUSTER', 'MYID'))];
    await call(target, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', sourceId);
    await call(source, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId);
    const src: Redis = source.client();
    try {
      await src.migrate('127.0.0.1', target.port, rk.redisKey, 0, 5000);
    } finally {
      src.disconnect();
    }
    // The key has moved, its slot not yet: the source answers ASK, and the write follows it.
    await writer.put('orders', { ...key, n: 2 });
    assert.equal((await reader.get('orders', key)).item?.n, 2);
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', targetId).catch(() => undefined);
    await writer.put('orders', { ...key, n: 3 });
    let hit = false;
    for (let i = 0; i < 200 && !hit; i++) {
      const r = await reader.get('orders', key);
      assert.equal(r.item?.n, 3, `read ${i} served ${r.item?.n} (${r.cache})`);
      hit = r.cache === 'hit';
      if (!hit) await sleep(25);
    }
    assert.ok(hit, 'the key hits again on its new primary');
    assert.equal(nodeServer(reader, key), target);
  });

  test('G1: writers and readers on the keys of a slot while it migrates key by key: no stale read after an acknowledged write', async () => {
    const writer = container({ CACHE_WRITE_POLICY: 'strict' });
    const reader = container();
    await Promise.all([warm(writer), warm(reader)]);
    // Keys that share one slot (their names hash there: keys cannot carry a hash tag, lib/keys.ts).
    const first = { customerId: 'load-0', orderId: 'o' };
    const slot = slotOf(writer.resolve('orders', first).redisKey);
    const keys: Key[] = [first];
    for (let i = 1; keys.length < 4; i++) {
      const k = { customerId: `load-${i}`, orderId: 'o' };
      if (slotOf(writer.resolve('orders', k).redisKey) === slot) keys.push(k);
    }
    const source = await serverOf(writer, first);
    const target = await serverOf(writer, (await keysSplitBy(writer, 'load-target', source, 1)).off[0]!);
    const acked = new Map<string, number>();
    for (const k of keys) {
      await writer.put('orders', { ...k, n: 0 });
      acked.set(k.customerId, 0);
    }
    let stop = false;
    let refused = 0;
    const problems: string[] = [];
    const writers = keys.map(async (k) => {
      for (let n = 1; !stop; n++) {
        try {
          await writer.put('orders', { ...k, n });
          acked.set(k.customerId, n);
        } catch (err) {
          if (err instanceof CacheUnavailableError) refused++;
          else problems.push(String(err));
        }
        await sleep(10);
      }
    });
    const readers = keys.map(async (k) => {
      while (!stop) {
        const floor = acked.get(k.customerId)!;
        const r = await reader.get('orders', k);
        if ((r.item?.n as number) < floor) problems.push(`${k.customerId}: read ${r.item?.n} (${r.cache}) after ${floor} was acknowledged`);
        await sleep(3);
      }
    });
    const [sourceId, targetId] = [String(await call(source, 'CLUSTER', 'MYID')), String(await call(target, 'CLUSTER', 'MYID'))];
    await sleep(300);
    await call(target, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', sourceId);
    await call(source, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId);
    for (const k of keys) {
      await sleep(200);
      await call(source, 'MIGRATE', '127.0.0.1', target.port, writer.resolve('orders', k).redisKey, 0, 5000).catch(() => undefined);
    }
    await sleep(200);
    // What the writers created meanwhile on the source (a key it no longer had answers ASK, so new ones are few).
    for (let round = 0; round < 3; round++) {
      const left = (await call(source, 'CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[];
      for (const key of left) await call(source, 'MIGRATE', '127.0.0.1', target.port, key, 0, 5000).catch(() => undefined);
    }
    for (const s of cluster.servers) await call(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', targetId).catch(() => undefined);
    const moved = keys.map((k) => acked.get(k.customerId)!);
    await sleep(1500);
    stop = true;
    await Promise.all([...writers, ...readers]);
    assert.deepEqual(problems, []);
    assert.ok(
      keys.some((k, i) => acked.get(k.customerId)! > moved[i]!),
      `writes acknowledged after the move (refused meanwhile: ${refused})`,
    );
    assert.equal(nodeServer(reader, first), target);
  });
  test('a failover whose old primary stays dead is learnt from requests for its keys, within a quarter second of the last refresh, not at the check interval', async () => {
    // The state machines' clock is driven by hand: the throttles of the topology refreshes are what is tested.
    const clock = manualClock();
    const writer = container({ CACHE_CHECK_INTERVAL_SECONDS: '60', CACHE_WRITE_POLICY: 'strict' }, { clock: clock.now });
    await warm(writer);
    const primary = await serverOf(writer, { customerId: 'learn-0', orderId: 'o' });
    const replica = await replicaOf(primary);
    const [key] = (await keysSplitBy(writer, 'learn', primary, 1)).on;
    await writer.put('orders', { ...key!, n: 1 });
    clock.advance(2_000);
    await primary.kill();
    try {
      // The write that meets the dead primary: refused; the topology it asks for still names the primary.
      await assert.rejects(writer.put('orders', { ...key!, n: 2 }), CacheUnavailableError);
      await sleep(300);
      await call(replica, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
      for (let i = 0; i < 200 && !/^role:master/m.test(String(await call(replica, 'INFO', 'replication'))); i++) await sleep(25);
      clock.advance(300);
      // This write still goes to the dead primary, but asks for the topology again (its primary is down).
      await writer.put('orders', { ...key!, n: 3 }).catch(() => undefined);
      // The clock stands still, a second short of the dead primary's next probe and a minute short of
      // the check interval: only that request's refresh can move the key (real time only lets it land).
      const rk = writer.resolve('orders', key!);
      for (let i = 0; i < 80 && !writer.nodeFor(rk)?.address.endsWith(`:${replica.port}`); i++) await sleep(50);
      assert.equal(nodeServer(writer, key!), replica, 'the key goes to the promoted replica');
      // And a strict write of it is accepted there.
      await writer.put('orders', { ...key!, n: 4 });
    } finally {
      await primary.startAgain();
      await replicaOf(replica);
    }
  });
});
