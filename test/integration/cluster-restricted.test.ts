/**
 * CACHE_MODE=cluster on a cluster whose servers refuse the commands ElastiCache (Serverless) keeps
 * from its clients (README, "Cluster mode and ElastiCache Serverless"): each is renamed to "" in the
 * servers' configuration, so a call of it, from a client or from a script, is an unknown command.
 * Reads, writes, stream invalidations and a restarted primary must not need any of them; WAIT is what
 * the strict policy would use, and what the library does without it is pinned here.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisServer } from '../helpers/redis-server.ts';
import { call, useClusterFixture, warm as warmed, type OrderKey as Key, type SlotRanges } from '../helpers/cluster-fixture.ts';
import { streamRecord } from '../helpers/faults.ts';
import { captureLogs } from '../helpers/capture-logs.ts';
import { invalidateStreamRecords } from '../../lib/index.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { slotOf } from '../../lib/cache/slots.ts';

/**
 * What the servers refuse. ElastiCache as a whole (its "Restricted commands" page): CONFIG, DEBUG,
 * MIGRATE, SAVE, BGSAVE, BGREWRITEAOF, REPLICAOF, SLAVEOF, SHUTDOWN (SYNC and PSYNC too, but the local
 * replicas use them to replicate: left on). Serverless besides (README): WAIT, CLIENT (most
 * subcommands; the whole command here), KEYS, MONITOR, MOVE, SWAPDB, LASTSAVE, LATENCY, MEMORY,
 * OBJECT, SLOWLOG, FUNCTION, FCALL, FCALL_RO, SCRIPT (below); SELECT too: a Serverless cache has database 0 only, and
 * the library must never select one. CLUSTER and ACL subcommands cannot be renamed one by one (and
 * the fixture builds the cluster with them): the library uses only CLUSTER SLOTS, which the service
 * answers. INFO is hidden per user below (a service may hide it; lib/cache/node.ts has a fallback).
 */
const RESTRICTED = [
  'CONFIG',
  'DEBUG',
  'MIGRATE',
  'SAVE',
  'BGSAVE',
  'BGREWRITEAOF',
  'REPLICAOF',
  'SLAVEOF',
  'SHUTDOWN',
  'WAIT',
  'CLIENT',
  'KEYS',
  'MONITOR',
  'MOVE',
  'SWAPDB',
  'LASTSAVE',
  'LATENCY',
  'MEMORY',
  'OBJECT',
  'SLOWLOG',
  'FUNCTION',
  'FCALL',
  'FCALL_RO',
  'SELECT',
  // SCRIPT KILL is the service's to refuse; the whole command here: ioredis sends a script with
  // EVALSHA and, after NOSCRIPT, EVAL (no pipeline of scripts, which would use SCRIPT LOAD).
  'SCRIPT',
];

describe('cluster mode on servers that refuse the commands ElastiCache Serverless restricts', () => {
  const fixture = useClusterFixture({
    replicas: 1,
    nodeTimeoutMs: 5000,
    extraArgs: RESTRICTED.flatMap((c) => ['--rename-command', c, '']),
  });
  const { cluster } = fixture;
  /** The first primary's URL as the user that may not run INFO. */
  let appUrl = '';
  before(async () => {
    // A user that may not run INFO either (run_id and the replicas hidden), as a managed service may keep it.
    appUrl = await fixture.addUser('app', 'secret', '-info');
  });

  /** A container in cluster mode; `hideInfo`: as the user that may not run INFO. */
  function container(hideInfo: boolean, overrides: Record<string, string> = {}): ItemCache {
    const url = hideInfo ? appUrl : cluster.primaries[0]!.url;
    return fixture.container({ CACHE_NODES: url, CACHE_ALLOW_PLAIN_AUTH: '1', ...overrides });
  }

  /** Warmed, and every primary up. */
  async function warm(cache: ItemCache): Promise<void> {
    await warmed(cache);
    assert.deepEqual(
      cache.health().map((h) => h.status),
      ['up', 'up', 'up'],
    );
  }

  /** The primary that owns `key`'s slot, as the cluster says (CLUSTER SLOTS). */
  async function serverOf(cache: ItemCache, key: Key): Promise<RedisServer> {
    const slot = slotOf(cache.resolve('orders', key).redisKey);
    const ranges = (await call(cluster.primaries[0]!, 'CLUSTER', 'SLOTS')) as SlotRanges;
    const range = ranges.find(([from, to]) => from <= slot && slot <= to);
    const owner = cluster.servers.find((s) => s.port === range?.[2][1]);
    if (!owner) throw new Error(`no server owns slot ${slot}`);
    return owner;
  }

  test('the servers do refuse them, from a client and from a script', async () => {
    const s = cluster.primaries[0]!;
    for (const command of ['WAIT', 'CONFIG', 'CLIENT', 'SELECT'])
      await assert.rejects(call(s, command, ...(command === 'WAIT' ? [0, 0] : ['x'])), /unknown command/, command);
    await assert.rejects(call(s, 'EVAL', "return redis.call('WAIT', 0, 0)", 0), /Unknown Redis command|unknown command/i);
    const c = s.client({ username: 'app', password: 'secret', maxRetriesPerRequest: 1 });
    try {
      await assert.rejects(c.info(), /NOPERM|no permissions/i);
    } finally {
      c.disconnect();
    }
  });

  for (const hideInfo of [false, true]) {
    const user = hideInfo ? 'INFO hidden too' : 'INFO answered';
    test(`${user}: reads fill and hit, writes invalidate and store, a stream record invalidates, on all three primaries`, async () => {
      const cache = container(hideInfo);
      await warm(cache);
      const keys = Array.from({ length: 20 }, (_, i) => ({ customerId: `r-${hideInfo}-${i}`, orderId: 'o' }));
      for (const k of keys) await cache.put('orders', { ...k, n: 1 });
      const first = await cache.batchGet('orders', keys);
      assert.ok(
        first.sources.every((s) => s === 'hit'),
        first.sources.join(','),
      );
      await cache.update('orders', keys[1]!, { set: { n: 2 } });
      assert.equal((await cache.get('orders', keys[1]!)).item?.n, 2);
      await cache.delete('orders', keys[2]!);
      assert.equal((await cache.get('orders', keys[2]!)).item, undefined);
      const rk = cache.resolve('orders', keys[3]!);
      assert.deepEqual((await invalidateStreamRecords(cache, [streamRecord(cache, rk, '1')])).batchItemFailures, []);
      assert.equal((await cache.get('orders', keys[3]!)).cache, 'miss');
      assert.equal((await cache.get('orders', keys[3]!)).cache, 'hit');
      const sizes = await Promise.all(cluster.primaries.map((s) => s.dbsize()));
      assert.ok(sizes.filter((n) => n > 0).length >= 2, `entries per primary: ${sizes.join(',')}`);
      assert.deepEqual(
        cache.health().map((h) => h.status),
        ['up', 'up', 'up'],
      );
    });
  }

  test('strict without WAIT: writes and invalidations are accepted unconfirmed by a replica, the node stays up, and it is logged once per node', async () => {
    const logs = captureLogs();
    try {
      const cache = container(false, { CACHE_WRITE_POLICY: 'strict' });
      await warm(cache);
      const keys = Array.from({ length: 6 }, (_, i) => ({ customerId: `strict-${i}`, orderId: 'o' }));
      for (const k of keys) await cache.put('orders', { ...k, n: 1 });
      for (const k of keys) await cache.put('orders', { ...k, n: 2 });
      for (const k of keys) assert.equal((await cache.get('orders', k)).item?.n, 2);
      assert.equal((await cache.get('orders', keys[0]!)).cache, 'hit');
      const rk = cache.resolve('orders', keys[0]!);
      assert.deepEqual((await invalidateStreamRecords(cache, [streamRecord(cache, rk, '3')])).batchItemFailures, []);
      assert.equal((await cache.get('orders', keys[0]!)).cache, 'miss');
      assert.deepEqual(
        cache.health().map((h) => h.status),
        ['up', 'up', 'up'],
      );
      const noWait = logs.entries().filter((e) => e.message === 'CACHE_NODE_NO_WAIT');
      assert.ok(noWait.length >= 1 && noWait.length <= 3, `CACHE_NODE_NO_WAIT logged ${noWait.length} times`);
      assert.equal(new Set(noWait.map((e) => e.cacheNode)).size, noWait.length, 'once per node');
    } finally {
      logs.stop();
    }
  });

  test('a primary restarted without its data: its new epoch settles, then its keys hit again (INFO hidden: the marker tells the epoch)', async () => {
    const cache = container(true);
    await warm(cache);
    const key = { customerId: 'restart', orderId: 'o' };
    const primary = await serverOf(cache, key);
    await cache.put('orders', { ...key, n: 1 });
    assert.equal((await cache.get('orders', key)).cache, 'hit');
    await primary.restart({ keepData: false });
    // ACL users live in memory: the restarted server knows only the default user until told again.
    await call(primary, 'ACL', 'SETUSER', 'app', 'on', '>secret', '~*', '&*', '+@all', '-info');
    let settling = false;
    for (let i = 0; i < 400 && !settling; i++) {
      await cache.get('orders', key);
      settling = cache.health().some((h) => h.address.endsWith(`:${primary.port}`) && h.status === 'settling');
      if (!settling) await sleep(25);
    }
    assert.ok(settling, `health: ${JSON.stringify(cache.health())}`);
    assert.equal((await cache.get('orders', key)).cache, 'miss');
    await cache.put('orders', { ...key, n: 2 });
    let hit = false;
    for (let i = 0; i < 800 && !hit; i++) {
      const r = await cache.get('orders', key);
      assert.equal(r.item?.n, 2, `read ${i} served ${r.item?.n} (${r.cache})`);
      hit = r.cache === 'hit';
      if (!hit) await sleep(25);
    }
    assert.ok(hit, `the restarted primary serves hits again: ${JSON.stringify(cache.health())}`);
  });
});
