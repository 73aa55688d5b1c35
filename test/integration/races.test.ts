/**
 * R1–R8 as deterministic interleavings: one client is held at a seam of the protocol (ProtocolHooks)
 * while others run, against real redis-server shards and DynamoDB Local. Each "container" is its own
 * ItemCache instance with its own clients and node health.
 *
 * Every test runs twice: in shards mode (three plain redis-server shards) and in cluster mode
 * (CACHE_MODE=cluster on a local Redis Cluster of three primaries with one replica each, started once
 * for the file), where each key's race plays out on the primary that owns its slot. R6 is in
 * faults.test.ts; R9 in faults.test.ts (shards) and cluster.test.ts (cluster).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { setTimeout as sleep } from 'node:timers/promises';
import { Gate, startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer, type RedisCluster } from '../helpers/redis-server.ts';
import { entryFields, faultyDynamoClient, streamRecord } from '../helpers/faults.ts';
import { invalidateStreamRecords, StoreUnavailableError, VersionMismatchError } from '../../lib/index.ts';
import type { ProtocolHooks } from '../../lib/cache/protocol.ts';
import type { ItemCache, ItemCacheOptions } from '../../lib/item-cache.ts';

/** Hooks that hold the first client reaching `point` for `key` at a gate, once. */
function holdOnce(point: keyof ProtocolHooks, redisKey: string, gate: Gate, fills?: boolean[]): ProtocolHooks {
  let used = false;
  const hooks: ProtocolHooks = {
    afterFill: (k, stored) => {
      if (k === redisKey) fills?.push(stored);
    },
  };
  const hold = async (k: string): Promise<void> => {
    if (k !== redisKey || used) return;
    used = true;
    await gate.hold();
  };
  if (point === 'afterFill') throw new Error('hold at afterFill is not supported');
  hooks[point] = hold;
  return hooks;
}

/** Waits until every primary a cluster-mode container knows is verified and serves reads (a cold start learns the topology first). */
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

for (const mode of ['shards', 'cluster'] as const)
  describe(`races R1–R8 (${mode} mode)`, () => {
    let stack: TestStack;
    let cluster: RedisCluster | undefined;
    before(async () => {
      if (mode === 'shards') stack = await startStack();
      else {
        [stack, cluster] = await Promise.all([
          startStack({ shards: 1 }),
          RedisServer.startCluster(3, { replicas: 1, nodeTimeoutMs: 5000 }),
        ]);
      }
    });
    after(async () => {
      await stack.stop();
      await cluster?.stop();
    });

    /** A new container (its own clients and node health), in this suite's mode and ready to serve from the cache. */
    async function container(
      overrides: Record<string, string> = {},
      options: Omit<ItemCacheOptions, 'config' | 'tables'> = {},
    ): Promise<ItemCache> {
      if (cluster === undefined) return stack.cache(overrides, options);
      const c = stack.cache(
        { CACHE_MODE: 'cluster', CACHE_NODES: cluster.primaries[0]!.url, CACHE_START_CYCLES: '0', ...overrides },
        options,
      );
      await warm(c);
      return c;
    }

    test('R1: a slow filler that read the old item cannot store it after a write returned', async () => {
      const writer = await container();
      const key = { userId: 'r1' };
      await writer.put('users', { ...key, v: 'old' });
      const rk = writer.resolve('users', key);
      await writer.nodeFor(rk)!.client.del(rk.redisKey); // start from a miss
      const gate = new Gate();
      const fills: boolean[] = [];
      const reader = await container({}, { hooks: holdOnce('beforeFill', rk.redisKey, gate, fills) });
      const slow = reader.get('users', key);
      await gate.reached; // the reader has read 'old' from DynamoDB and stalls before its fill
      await writer.put('users', { ...key, v: 'new' });
      gate.open();
      assert.equal((await slow).item?.v, 'old'); // concurrent with the write: either answer is allowed
      assert.deepEqual(fills, [false], 'the stale fill was refused');
      const later = await (await container()).get('users', key);
      assert.equal(later.item?.v, 'new');
      assert.equal(later.cache, 'hit');
    });

    test('R2: a reader whose lease predates a write cannot fill, whether it read before or after the commit', async () => {
      const writer = await container();
      for (const [i, when] of (['afterLease', 'beforeFill'] as const).entries()) {
        const key = { userId: `r2-${i}` };
        await writer.put('users', { ...key, v: 'old' });
        const rk = writer.resolve('users', key);
        await writer.nodeFor(rk)!.client.del(rk.redisKey);
        const gate = new Gate();
        const fills: boolean[] = [];
        const reader = await container({}, { hooks: holdOnce(when, rk.redisKey, gate, fills) });
        const pending = reader.get('users', key);
        await gate.reached;
        await writer.put('users', { ...key, v: 'new' });
        gate.open();
        const got = await pending;
        assert.equal(got.item?.v, when === 'afterLease' ? 'new' : 'old');
        assert.deepEqual(fills, [false], `${when}: fill refused`);
        assert.equal((await (await container()).get('users', key)).item?.v, 'new');
      }
    });

    test('R3: writers whose cache updates land out of order never leave the older value trusted', async () => {
      const key = { userId: 'r3' };
      const base = await container();
      await base.put('users', { ...key, v: 0 });
      const rk = base.resolve('users', key);
      // W1 commits v1 first but its end-write lands last; W2 commits v2 and ends in between.
      const gate1 = new Gate();
      const w1 = await container({}, { hooks: holdOnce('afterCommit', rk.redisKey, gate1) });
      const w2 = await container();
      const first = w1.put('users', { ...key, v: 1 });
      await gate1.reached;
      const second = await w2.put('users', { ...key, v: 2 });
      assert.equal(second.version, 3);
      assert.equal((await entryFields(base, rk)).d, undefined, 'W2 could not store: W1 is still in flight');
      gate1.open();
      await first;
      const fields = await entryFields(base, rk);
      assert.equal(fields.d, undefined, 'W1 did not have the key to itself: it may only invalidate');
      const r = await (await container()).get('users', key);
      assert.equal(r.item?.v, 2);
      assert.equal(r.version, 3);
    });

    test('R3: the same with both writers held after commit and released newest-first', async () => {
      const key = { userId: 'r3b' };
      const base = await container();
      await base.put('users', { ...key, v: 0 });
      const rk = base.resolve('users', key);
      const g1 = new Gate();
      const g2 = new Gate();
      const w1 = await container({}, { hooks: holdOnce('afterCommit', rk.redisKey, g1) });
      const w2 = await container({}, { hooks: holdOnce('afterCommit', rk.redisKey, g2) });
      const p1 = w1.put('users', { ...key, v: 1 });
      await g1.reached;
      const p2 = w2.put('users', { ...key, v: 2 });
      await g2.reached;
      g2.open();
      await p2;
      g1.open();
      await p1;
      assert.equal((await entryFields(base, rk)).d, undefined);
      assert.equal((await (await container()).get('users', key)).item?.v, 2);
    });

    test('R4: a fill never recreates an entry that was evicted under it, and an old lease never matches again', async () => {
      const c = await container();
      const key = { userId: 'r4' };
      await c.put('users', { ...key, v: 'old' });
      const rk = c.resolve('users', key);
      const node = c.nodeFor(rk)!;
      await node.client.del(rk.redisKey);
      // (a) evicted while the reader is between its lease and its fill, nobody else around
      {
        const gate = new Gate();
        const fills: boolean[] = [];
        const reader = await container({}, { hooks: holdOnce('beforeFill', rk.redisKey, gate, fills) });
        const pending = reader.get('users', key);
        await gate.reached;
        await node.client.del(rk.redisKey); // what eviction or expiry does
        gate.open();
        await pending;
        assert.deepEqual(fills, [false]);
        assert.equal(await node.client.exists(rk.redisKey), 0, 'the entry was not recreated');
      }
      // (b) evicted, a write recreates the entry (new stamps), then the old reader tries to fill
      {
        const gate = new Gate();
        const fills: boolean[] = [];
        const reader = await container({}, { hooks: holdOnce('beforeFill', rk.redisKey, gate, fills) });
        const pending = reader.get('users', key);
        await gate.reached;
        await node.client.del(rk.redisKey);
        await c.put('users', { ...key, v: 'new' });
        gate.open();
        assert.equal((await pending).item?.v, 'old');
        assert.deepEqual(fills, [false]);
        assert.equal((await (await container()).get('users', key)).item?.v, 'new');
      }
    });

    test('R5: an out-of-band write reaches the cache through its stream record and beats a slow fill', async () => {
      const c = await container();
      const key = { userId: 'r5' };
      await c.put('users', { ...key, v: 'old' });
      const rk = c.resolve('users', key);
      // A cached value, changed behind the library's back:
      assert.equal((await c.get('users', key)).cache, 'hit');
      await c.nodeFor(rk)!.client.del(rk.redisKey);
      const gate = new Gate();
      const fills: boolean[] = [];
      const reader = await container({}, { hooks: holdOnce('beforeFill', rk.redisKey, gate, fills) });
      const pending = reader.get('users', key);
      await gate.reached;
      await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}users`, Item: { userId: { S: 'r5' }, v: { S: 'oob' } } }));
      const consumer = await container();
      const result = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '100')]);
      assert.deepEqual(result.batchItemFailures, []);
      gate.open();
      await pending;
      assert.deepEqual(fills, [false]);
      assert.equal((await (await container()).get('users', key)).item?.v, 'oob');
      // Repeated and out-of-order records are harmless.
      const again = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '100'), streamRecord(consumer, rk, '99')]);
      assert.deepEqual(again.batchItemFailures, []);
      assert.equal((await c.get('users', key)).item?.v, 'oob');
    });

    test('R7: a write DynamoDB rejects or loses leaves no unwritten value and no stale one', async () => {
      const { client, faults } = faultyDynamoClient();
      const c = await container({ DYNAMODB_MAX_ATTEMPTS: '1' }, { dynamoClient: client });
      const key = { userId: 'r7' };
      await c.put('users', { ...key, v: 'v1' });
      // (a) refused before it was sent: nothing committed, the old value is still what reads see
      faults.before.push('PutItemCommand');
      await assert.rejects(c.put('users', { ...key, v: 'never' }), StoreUnavailableError);
      assert.equal((await c.get('users', key)).item?.v, 'v1');
      assert.equal((await (await container()).get('users', key)).item?.v, 'v1');
      // (b) a condition failure
      await assert.rejects(c.put('users', { ...key, v: 'never' }, { ifVersion: 99 }), VersionMismatchError);
      assert.equal((await c.get('users', key)).item?.v, 'v1');
      // (c) committed, but the answer was lost: the caller sees an error, and no read may return the old value
      assert.equal((await c.get('users', key)).cache, 'hit');
      faults.after.push('UpdateItemCommand');
      await assert.rejects(c.update('users', key, { set: { v: 'v2' } }));
      const r = await (await container()).get('users', key);
      assert.equal(r.item?.v, 'v2');
      assert.equal((await c.get('users', key)).item?.v, 'v2');
    });

    test('R8: a not-found cached by a slow reader cannot hide an item created meanwhile; deletes read as not-found', async () => {
      const c = await container();
      const key = { userId: 'r8' };
      const rk = c.resolve('users', key);
      const gate = new Gate();
      const fills: boolean[] = [];
      const reader = await container({}, { hooks: holdOnce('beforeFill', rk.redisKey, gate, fills) });
      const pending = reader.get('users', key);
      await gate.reached; // it read "not found"
      await c.put('users', { ...key, v: 'born' });
      gate.open();
      assert.equal((await pending).item, undefined);
      assert.deepEqual(fills, [false]);
      assert.equal((await (await container()).get('users', key)).item?.v, 'born');
      await c.delete('users', key);
      const gone = await (await container()).get('users', key);
      assert.equal(gone.item, undefined);
      assert.equal(gone.cache, 'hit', 'the delete stored a negative entry');
    });
  });
