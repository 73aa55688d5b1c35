/** A batch-get whose items outweigh Lambda's 6 MB response limit answers within it, the rest as unprocessed keys. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { apiEvent } from '../helpers/api-event.ts';
import type { ItemCache } from '../../lib/index.ts';
import { createHttpApp, type HttpHandler } from '../../functions/http/app.ts';
import { readRoutes } from '../../functions/http/routes.ts';

/** Lambda's response payload quota (6 MB), which the whole result API Gateway receives must stay under. */
const LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024;

describe('batch-get within the Lambda response limit', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let app: HttpHandler;
  before(async () => {
    stack = await startStack({ shards: 1 });
    cache = stack.cache();
    app = createHttpApp(cache, readRoutes);
  });
  after(async () => stack.stop());

  async function batchGet(keys: object[]) {
    const result = await app(apiEvent('POST', '/tables/users/batch-get', { body: { keys } }));
    // The whole result as Lambda hands it to API Gateway: status, headers, body string.
    const resultBytes = Buffer.byteLength(JSON.stringify(result), 'utf8');
    return { result, resultBytes, json: JSON.parse(result.body ?? '') };
  }

  test('100 items of ~390 KB: some items and the rest as unprocessed keys, each answer under 6 MB; asking again gets them all', async () => {
    // Prepare: 100 items of ~390 KB (39 MB together), a few missing keys among them.
    const ids = Array.from({ length: 100 }, (_, i) => `big-${i}`);
    for (const [i, id] of ids.entries()) {
      if (i % 25 === 7) continue; // missing
      await cache.put('users', { userId: id, blob: `${i}:`.padEnd(390_000, String.fromCharCode(97 + (i % 26))), quote: '"\\' });
    }
    const expectedMissing = ids.filter((_, i) => i % 25 === 7);
    // Act: ask, then ask again for what came back unprocessed, until nothing is left.
    const got = new Map<string, string>();
    const missing: string[] = [];
    let ask = ids.map((userId) => ({ userId }));
    let rounds = 0;
    while (ask.length > 0) {
      rounds++;
      assert.ok(rounds <= 20, 'asking again always progresses');
      const { result, resultBytes, json } = await batchGet(ask);
      // Assess: every answer is a 200 under the limit, with items, missing keys and unprocessed keys accounting for every key asked.
      assert.equal(result.statusCode, 200);
      assert.ok(resultBytes < LAMBDA_RESPONSE_LIMIT_BYTES, `${resultBytes} bytes`);
      assert.ok(json.items.length > 0);
      const unprocessed: { userId: string }[] = json.unprocessed ?? [];
      assert.equal(json.items.length + json.missing.length + unprocessed.length, ask.length);
      for (const item of json.items) got.set(item.userId, item.blob);
      missing.push(...json.missing.map((k: { userId: string }) => k.userId));
      if (rounds === 1) {
        assert.ok(unprocessed.length > 0, 'the first answer cannot hold 39 MB');
        assert.ok(resultBytes > LAMBDA_RESPONSE_LIMIT_BYTES / 2, `the answer is filled, not cut short: ${resultBytes} bytes`);
      }
      ask = unprocessed;
    }
    assert.ok(rounds >= 7, `39 MB in answers under 6 MB takes at least 7 rounds, took ${rounds}`);
    assert.deepEqual([...got.keys()].sort(), ids.filter((id) => !expectedMissing.includes(id)).sort());
    assert.deepEqual(missing.sort(), expectedMissing.sort());
    for (const [id, blob] of got) assert.equal(blob.length, 390_000, id);
  });

  test('a batch that fits is answered whole, with no unprocessed field', async () => {
    await cache.put('users', { userId: 'small-1', v: 1 });
    const { json } = await batchGet([{ userId: 'small-1' }, { userId: 'small-none' }]);
    assert.deepEqual(json, { items: [{ userId: 'small-1', v: 1 }], missing: [{ userId: 'small-none' }] });
  });
});
