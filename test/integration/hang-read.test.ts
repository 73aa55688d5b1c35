/**
 * G3 on the hit path's reads (node.ts `read`: commands sent straight to the connection, bounded by
 * the node's DeadlineQueue, not by a timer per call): concurrent reads from a hung node each cost
 * at most the command timeout and are served from DynamoDB; the answers the node sends once it
 * wakes go to the reads that asked for them, so reads after its recovery get their own items.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { manualClock, startStack, type TestStack } from '../helpers/stack.ts';

const TIMEOUT_MS = 400;

describe('hung node, hit path', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  test('concurrent reads of a hung node are each bounded by the command timeout; answers stay matched after it wakes', async () => {
    const clock = manualClock();
    const c = stack.cache(
      { CACHE_COMMAND_TIMEOUT_MS: String(TIMEOUT_MS), CACHE_CHECK_INTERVAL_SECONDS: '10', CACHE_START_CYCLES: '0' },
      { clock: clock.now },
    );
    const keys = Array.from({ length: 40 }, (_, i) => ({ userId: `hang${i}` }));
    for (const [i, key] of keys.entries()) await c.put('users', { ...key, n: i });
    for (const key of keys) assert.equal((await c.get('users', key)).cache, 'hit');
    const node = c.nodeFor(c.resolve('users', keys[0]))!;
    const server = stack.serverOf(c, c.resolve('users', keys[0]));

    server.pause();
    try {
      const t0 = Date.now();
      const first = keys.slice(0, 20).map(async (key) => ({ r: await c.get('users', key), ms: Date.now() - t0 }));
      // Reads that start later get their own bound, not the first ones' (a second turn of the loop).
      await new Promise((r) => setTimeout(r, 100));
      const t1 = Date.now();
      const second = c.batchGet('users', keys.slice(20)).then((r) => ({ r, ms: Date.now() - t1 }));
      for (const [i, { r, ms }] of (await Promise.all(first)).entries()) {
        assert.equal(r.cache, 'bypass');
        assert.equal(r.item?.n, i, 'served from DynamoDB');
        assert.ok(ms >= TIMEOUT_MS - 5, `read ${i} waited for its bound (${ms} ms)`);
        assert.ok(ms < TIMEOUT_MS + 1500, `read ${i} bounded (${ms} ms)`);
      }
      const batch = await second;
      assert.deepEqual(
        batch.r.items.map((x) => x.n).sort((a, b) => Number(a) - Number(b)),
        keys.slice(20).map((_, i) => 20 + i),
      );
      assert.ok(batch.ms >= TIMEOUT_MS - 5, `the batch's reads had their own bound, not the first reads' (${batch.ms} ms)`);
      assert.ok(batch.ms < TIMEOUT_MS + 1500, `batch bounded (${batch.ms} ms)`);
      assert.equal(node.status, 'down');
    } finally {
      server.resume();
    }

    // The node answers the reads it was sent while hung; they were already settled. Once it is
    // probed and trusted again, every read gets its own entry.
    clock.advance(10_000);
    void node.status;
    assert.equal(await node.probing, true);
    assert.equal(node.status, 'up');
    for (let round = 0; round < 2; round++) {
      const results = await Promise.all(keys.map((key) => c.get('users', key)));
      results.forEach((r, i) => {
        assert.equal(r.item?.n, i, `read ${i} got its own item`);
        if (round === 1) assert.equal(r.cache, 'hit');
      });
    }
  });
});
