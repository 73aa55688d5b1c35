/**
 * Issue 18, finding 5: everything read from Redis is untrusted input. An entry planted straight
 * into a real redis-server (a faulty or tampered node) that does not pass the checks a request body
 * passes (numbers, depth, types) is dropped and the item read from DynamoDB: the GET answers
 * DynamoDB's item (never a 500 or a 400), the bad entry is gone, and the log line gives a fixed
 * reason without any of the entry's bytes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { call } from '../helpers/api-event.ts';
import { createHttpApp, type HttpHandler } from '../../functions/http/app.ts';
import { allRoutes } from '../../functions/http/routes.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { logsDuring } from '../helpers/capture-logs.ts';

const nested = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** Entries a tampered node could hold for the item `{ userId, v: 1 }`, each with a marker to find in logs. */
const PLANTED: [string, (userId: string) => string, string][] = [
  [
    'an item nested 5,000 levels (plain form)',
    (id) => `[1,{"userId":"${id}","v":1,"deep":${nested(5000)},"m":"PLANTED-BYTES"}]`,
    'too deep',
  ],
  [
    'an item nested 5,000 levels (attribute values)',
    (id) => `{"userId":{"S":"${id}"},"m":{"S":"PLANTED-BYTES"},"deep":${'{"L":['.repeat(5000)}${']}'.repeat(5000)}}`,
    'too deep',
  ],
  ['a number attribute "abc"', (id) => `{"userId":{"S":"${id}"},"v":{"N":"abc"},"m":{"S":"PLANTED-BYTES"}}`, 'bad number'],
  ['a 60,000-digit number', (id) => `{"userId":{"S":"${id}"},"v":{"N":"1${'0'.repeat(60_000)}1"},"m":{"S":"PLANTED-BYTES"}}`, 'bad number'],
  ['a number out of every range (1e400) in the plain form', (id) => `[1,{"userId":"${id}","v":1e400,"m":"PLANTED-BYTES"}]`, 'bad number'],
  ['an attribute value of no DynamoDB type', (id) => `{"userId":{"S":"${id}"},"v":{"Q":"PLANTED-BYTES"}}`, 'not an attribute value'],
  ['text that is not JSON', (id) => `{"userId":{"S":"${id}"},"m":{"S":"PLANTED-BYTES"}, oops`, 'not JSON'],
];

describe('planted cache entries', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let app: HttpHandler;
  let admin: Redis;
  before(async () => {
    stack = await startStack({ shards: 1 });
    cache = stack.cache();
    app = createHttpApp(cache, allRoutes);
    // The test's own client, without the library's tight command timeout.
    admin = stack.servers[0]!.client();
  });
  after(async () => {
    await admin.quit();
    await stack.stop();
  });

  PLANTED.forEach(([what, entry, reason], i) => {
    test(`GET: ${what} is dropped and the item read from DynamoDB; the log names "${reason}" and no bytes`, async () => {
      // Prepare
      const userId = `planted-${i}`;
      await cache.put('users', { userId, v: 1 });
      const rk = cache.resolve('users', { userId });
      assert.notEqual(await admin.hget(rk.redisKey, 'd'), null, 'the put cached the item');
      // Tagged with the node's epoch, as the library's own entries are: it would trust it.
      await admin.hset(rk.redisKey, 'd', cache.nodeFor(rk)!.epochTag + entry(userId));
      // Act
      const { result: res, lines } = await logsDuring(() => call(app, 'GET', `/tables/users/items/${userId}`));
      // Assess
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { userId, v: 1 });
      assert.equal(res.headers['x-cache'], 'bypass');
      assert.equal(await admin.hget(rk.redisKey, 'd'), null, 'the planted entry is gone');
      const logged = lines.filter((l) => l.includes('CACHE_ENTRY_UNREADABLE'));
      assert.equal(logged.length, 1, lines.join('\n'));
      assert.equal(JSON.parse(logged[0]!).reason, reason);
      for (const line of lines) assert.doesNotMatch(line, /PLANTED-BYTES|0000000000/, 'a log line carries entry bytes');
      // The next read fills from DynamoDB again and is served.
      const again = await call(app, 'GET', `/tables/users/items/${userId}`);
      assert.equal(again.status, 200);
      assert.deepEqual(again.json, { userId, v: 1 });
    });
  });

  test('batch-get: every planted entry is dropped and each item read from DynamoDB', async () => {
    // Prepare
    const ids = PLANTED.map((_, i) => `planted-batch-${i}`);
    for (const userId of ids) await cache.put('users', { userId, v: 1 });
    for (const [i, userId] of ids.entries()) {
      const rk = cache.resolve('users', { userId });
      await admin.hset(rk.redisKey, 'd', cache.nodeFor(rk)!.epochTag + PLANTED[i]![1](userId));
    }
    // Act
    const { result: res, lines } = await logsDuring(() =>
      call(app, 'POST', '/tables/users/batch-get', { body: { keys: ids.map((userId) => ({ userId })) } }),
    );
    // Assess
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(
      res.json.items,
      ids.map((userId) => ({ userId, v: 1 })),
    );
    assert.deepEqual(res.json.missing, []);
    for (const userId of ids) assert.equal(await admin.hget(cache.resolve('users', { userId }).redisKey, 'd'), null);
    assert.equal(lines.filter((l) => l.includes('CACHE_ENTRY_UNREADABLE')).length, ids.length);
    for (const line of lines) assert.doesNotMatch(line, /PLANTED-BYTES|0000000000/);
  });
});
