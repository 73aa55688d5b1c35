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
import { streamRecord } from '../helpers/faults.ts';
import { invalidateStreamRecords } from '../../lib/index.ts';
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

  test('(a) a write acknowledged on map B is never followed by an older value on map A, filled before or during it', async () => {
    // Prepare: A caches the item (alone, A trusts its nodes at once).
    const a = stack.cache(mapA);
    const key = { userId: 'moved' };
    const rk = a.resolve('users', key);
    await a.put('users', { ...key, v: 1 });
    assert.equal((await a.get('users', key)).cache, 'hit');
    const b = stack.cache(mapB);
    assert.notEqual(stack.serverOf(a, rk), stack.serverOf(b, rk), 'the key moved');
    // Act: B writes.
    await b.put('users', { ...key, v: 2 });
    // Assess
    const read = await a.get('users', key);
    assert.equal(read.item?.v, 2, 'A does not serve its entry from before B’s write');
    // A reader on A holding its lease while B writes: its fill is refused.
    const gate = new Gate();
    const held = stack.cache(mapA, { hooks: { afterLease: () => gate.hold() } });
    await held.get('users', { userId: 'warm-up' });
    const filling = held.get('users', key);
    await gate.reached;
    await b.put('users', { ...key, v: 3 });
    gate.open();
    await filling;
    assert.equal((await a.get('users', key)).item?.v, 3);
    assert.equal((await held.get('users', key)).item?.v, 3);
    // Once B's generation is trusted, A's writes reach B's node too.
    await eventually('B hits', async () => (await b.get('users', key)).cache === 'hit');
    await a.put('users', { ...key, v: 4 });
    assert.equal((await b.get('users', key)).item?.v, 4);
  });

  test('(b) a stream invalidation by a consumer on map B reaches the item’s node under map A', async () => {
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

  test('(c) rollback: map A returns after its record expired and B wrote; no stale hit, warm or cold', async () => {
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

  test('(d) a registry lost on every node: no stale hit, and no node emptied', async () => {
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

  test('(e) a new map serves from DynamoDB until W has passed since it appeared, then hits', async () => {
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
});
