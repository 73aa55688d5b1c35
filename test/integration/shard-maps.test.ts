/**
 * Issue 11, defect 3: a shard-map change must not serve stale entries. Two containers on different
 * maps over the same redis-servers (CACHE_NODES in the other order: every key moves), live at once,
 * then a rollback (lib/cache/maps.ts, ARCHITECTURE.md "The shard map"). Each test fails on the
 * protocol before live maps were registered.
 */
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { Gate, eventually, startStack, type TestStack } from '../helpers/stack.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { streamRecord } from '../helpers/faults.ts';
import { CacheUnavailableError, invalidateStreamRecords } from '../../lib/index.ts';
import { mapWaitMs } from '../../lib/config.ts';
import { REGISTRY_KEY } from '../../lib/cache/scripts.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Keys on each redis-server of the stack. */
async function dbSizes(stack: TestStack): Promise<number[]> {
  return Promise.all(
    stack.servers.map(async (s) => {
      const admin = s.client();
      const n = await admin.dbsize();
      await admin.quit();
      return n;
    }),
  );
}

/** A short refresh period and fence time, so W (1 s + 4.5 s + 1 s) passes within a test. */
const FAST = { CACHE_MAP_REFRESH_SECONDS: '1', DYNAMODB_DEADLINE_MS: '3000' };

describe('two shard maps live, and a rollback (defect 3)', () => {
  let stack: TestStack;
  let mapA: Record<string, string>;
  let mapB: Record<string, string>;
  beforeEach(async () => {
    stack = await startStack({ shards: 2 });
    const [first, second] = stack.env.CACHE_NODES.split(',') as [string, string];
    mapA = { ...FAST, CACHE_NODES: `${first},${second}` };
    mapB = { ...FAST, CACHE_NODES: `${second},${first}` };
  });
  afterEach(async () => stack.stop());

  test('(a) a write acknowledged on map B is never followed by an older value on map A, filled before or during it', {
    timeout: 90_000,
  }, async () => {
    // Prepare: A caches the item (alone, A trusts its nodes at once).
    const a = stack.cache(mapA);
    const key = { userId: 'moved' };
    const rk = a.resolve('users', key);
    await a.put('users', { ...key, v: 1 });
    assert.equal((await a.get('users', key)).cache, 'hit');
    // A's generations older than W: they need no wait when B appears (a younger one waits, to be safe).
    await sleep(mapWaitMs(stack.config(mapA)));
    const b = stack.cache(mapB);
    assert.notEqual(stack.serverOf(a, rk), stack.serverOf(b, rk), 'the key moved');
    // Act: B writes.
    await b.put('users', { ...key, v: 2 });
    // Assess
    const read = await a.get('users', key);
    assert.equal(read.item?.v, 2, 'A does not serve its entry from before B’s write');
    // A reader on A holding its lease (it read the old item) while B writes: its fill is refused.
    const other = { userId: 'moved-during-fill' };
    const rkOther = a.resolve('users', other);
    await a.put('users', { ...other, v: 1 });
    await a.nodeFor(rkOther)?.client.del(rkOther.redisKey); // as if evicted: the next read misses
    const gate = new Gate();
    const held = stack.cache(mapA, { hooks: { beforeFill: (k) => (k === rkOther.redisKey ? gate.hold() : undefined) } });
    const filling = held.get('users', other);
    await gate.reached;
    await b.put('users', { ...other, v: 2 });
    gate.open();
    assert.equal((await filling).item?.v, 1, 'it read before the write');
    assert.equal((await a.get('users', other)).item?.v, 2);
    assert.equal((await held.get('users', other)).item?.v, 2);
    // Once B's generation is trusted, A's writes reach B's node too.
    await eventually('B hits', async () => (await b.get('users', key)).cache === 'hit');
    await a.put('users', { ...key, v: 3 });
    assert.equal((await b.get('users', key)).item?.v, 3);
  });

  test('(b) a stream invalidation by a consumer on map B reaches the item’s node under map A', { timeout: 90_000 }, async () => {
    const a = stack.cache(mapA);
    const key = { userId: 'out-of-band' };
    const rk = a.resolve('users', key);
    await a.put('users', { ...key, v: 1 });
    assert.equal((await a.get('users', key)).cache, 'hit');
    const consumer = stack.cache(mapB);
    // Out of band: straight to DynamoDB, then its stream record reaches the consumer on map B.
    await stack.dynamo.send(
      new PutItemCommand({
        TableName: `${stack.prefix}users`,
        Item: { userId: { S: 'out-of-band' }, v: { N: '2' }, _version: { N: '2' } },
      }),
    );
    const result = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '100')]);
    assert.deepEqual(result.batchItemFailures, []);
    assert.equal((await a.get('users', key)).item?.v, 2);
  });

  test('(c) rollback: map A returns after its record expired and B wrote; no stale hit, warm or cold', { timeout: 90_000 }, async () => {
    const shortLived = { CACHE_MAP_EXPIRY_SECONDS: '3' };
    const a = stack.cache({ ...mapA, ...shortLived });
    const key = { userId: 'rolled-back' };
    await a.put('users', { ...key, v: 1 });
    assert.equal((await a.get('users', key)).cache, 'hit');
    // A's containers take no requests (a warm one is frozen); its records expire.
    const b = stack.cache({ ...mapB, ...shortLived });
    await sleep(3500);
    await b.put('users', { ...key, v: 2 }); // A's record has expired: B writes under its own map only
    assert.deepEqual(b.shards.view?.otherMaps(), [], 'B no longer knows A');
    // A returns: a warm container thawed, and a fresh one.
    assert.equal((await a.get('users', key)).item?.v, 2, 'warm');
    const fresh = stack.cache({ ...mapA, ...shortLived });
    assert.equal((await fresh.get('users', key)).item?.v, 2, 'cold');
  });

  test('(d) a registry lost on every node: no stale hit, and no node emptied', { timeout: 90_000 }, async () => {
    const a = stack.cache(mapA);
    const b = stack.cache(mapB);
    const key = { userId: 'lost-record' };
    await a.put('users', { ...key, v: 1 });
    await b.get('users', key); // B registers, learns A
    await eventually('A learns B and hits', async () => {
      await a.put('users', { ...key, v: 1 });
      return a.shards.view?.otherMaps().length === 1 && (await a.get('users', key)).cache === 'hit';
    });
    const sizes = await dbSizes(stack);
    // Act: every registry deleted (evicted, or deleted by hand).
    for (const server of stack.servers) {
      const admin = server.client();
      await admin.del(REGISTRY_KEY);
      await admin.quit();
    }
    // A fresh container of B finds no trace of A; it writes under its own map only.
    const b2 = stack.cache(mapB);
    await b2.put('users', { ...key, v: 2 });
    // Assess
    assert.equal((await a.get('users', key)).item?.v, 2, 'A does not trust its entries once its record is gone');
    await a.put('users', { ...key, v: 3 }); // A registers again (new generation): B learns A again
    assert.equal((await b2.get('users', key)).item?.v, 3);
    const after = await dbSizes(stack);
    after.forEach((n, i) => assert.ok(n >= (sizes[i] as number) - 1, `no node was emptied: ${sizes.join(',')} → ${after.join(',')}`));
  });

  test('(e) a new map serves from DynamoDB until W has passed since it appeared, then hits', { timeout: 90_000 }, async () => {
    const a = stack.cache(mapA);
    const key = { userId: 'new-map' };
    await a.put('users', { ...key, v: 1 });
    const b = stack.cache(mapB);
    const appeared = Date.now();
    await b.put('users', { ...key, v: 2 }); // stores nothing: B's generation is not trusted yet
    const w = mapWaitMs(stack.config(mapB));
    const sources: string[] = [];
    while (Date.now() - appeared < w - 1000) {
      const r = await b.get('users', key);
      assert.equal(r.item?.v, 2);
      sources.push(r.cache);
      await sleep(200);
    }
    assert.ok(sources.length > 0 && sources.every((s) => s === 'miss'), `no hit within W: ${sources.join(',')}`);
    assert.equal(
      b.health().every((n) => n.status === 'settling'),
      true,
      '/health shows the wait',
    );
    await eventually('B hits after W', async () => (await b.get('users', key)).cache === 'hit');
    assert.equal((await a.get('users', key)).item?.v, 2);
  });
  test('(f) keys a new map leaves where they were are served from the old map’s entries, even while the new map waits', {
    timeout: 90_000,
  }, async () => {
    // B moves shards 40-49 only (node 0 → node 1).
    const a = stack.cache(mapA);
    let n = 0;
    while (a.resolve('users', { userId: `stay-${n}` }).shard >= 40) n++;
    const key = { userId: `stay-${n}` };
    await a.put('users', { ...key, v: 1 });
    assert.equal((await a.get('users', key)).cache, 'hit');
    await sleep(mapWaitMs(stack.config(mapA))); // A's generations need no wait when B appears
    const b = stack.cache({ ...mapA, CACHE_SHARD_MAP: '0-39:0,40-99:1' });
    // Act: the new map's first reads (its own generation still waits W)
    const first = await b.get('users', key);
    // Assess
    assert.deepEqual([first.item?.v, first.cache], [1, 'hit'], 'A’s entry is as good for B: every writer of either map fences its node');
    await b.put('users', { ...key, v: 2 }); // fences and drops; B stores nothing yet
    assert.equal((await a.get('users', key)).item?.v, 2);
    assert.deepEqual(await b.get('users', key).then((r) => [r.item?.v, r.cache]), [2, 'hit'], 'A refilled it, B serves it');
  });

  test('(g) a node another map names under another address, the same data set, is fenced through this map’s own connection', {
    timeout: 90_000,
  }, async () => {
    const [first, second] = stack.env.CACHE_NODES.split(',') as [string, string];
    const proxy = await TcpProxy.start(Number(new URL(first).port));
    try {
      const strict = { CACHE_WRITE_POLICY: 'strict' };
      // A reaches node 0 through the proxy (another name for it); B directly. The same keys on the same data sets.
      const a = stack.cache({ ...FAST, ...strict, CACHE_NODES: `${proxy.url},${second}` });
      let n = 0;
      while (a.resolve('users', { userId: `aliased-${n}` }).shard >= 50) n++;
      const key = { userId: `aliased-${n}` };
      await a.put('users', { ...key, v: 1 });
      await sleep(1100);
      await a.put('users', { ...key, v: 1 }); // A's second view: it tells its nodes' ids
      const b = stack.cache({ ...FAST, ...strict, CACHE_NODES: `${first},${second}` });
      const rk = b.resolve('users', key);
      assert.equal(stack.serverOf(b, rk).url, first, 'the key lives on node 0');
      await b.get('users', key);
      assert.equal(b.shards.view?.otherMaps().length, 1, 'B knows A');
      const through = proxy.connections;
      // Act: A's way to node 0 is cut; B writes
      proxy.cut();
      const w = await b.put('users', { ...key, v: 2 });
      // Assess
      assert.equal(w.version, 3, 'not refused: node 0 under A is B’s own node 0');
      assert.equal(proxy.connections, through, 'B never connected through A’s address');
      await assert.rejects(a.put('users', { ...key, v: 3 }), CacheUnavailableError, 'A itself cannot reach it');
    } finally {
      await proxy.stop();
    }
  });
});
