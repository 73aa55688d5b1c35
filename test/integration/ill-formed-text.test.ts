/**
 * Text that has no UTF-8 spelling (lone UTF-16 surrogates) and attribute names DynamoDB cannot serve
 * back: refused at the door with a ValidationError naming the field, so no two keys share a cache
 * entry (G6) and nothing reads back other than it was written (G4).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { apiEvent, assertError, call } from '../helpers/api-event.ts';
import { batch, streamRecord } from '../helpers/stream-records.ts';
import { ValidationError, type ItemCache } from '../../lib/index.ts';
import { MAX_ATTRIBUTE_NAME_BYTES } from '../../lib/item-cache.ts';
import { createHttpApp, type HttpHandler } from '../../functions/http/app.ts';
import { allRoutes } from '../../functions/http/routes.ts';
import { createStreamHandler } from '../../functions/stream.ts';

const item = (table: string, ...key: string[]): string => `/tables/${table}/items/${key.map(encodeURIComponent).join('/')}`;

describe('ill-formed text and oversized attribute names', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let app: HttpHandler;
  before(async () => {
    stack = await startStack({ shards: 1 });
    cache = stack.cache();
    app = createHttpApp(cache, allRoutes);
  });
  after(async () => stack.stop());

  test('G6: a batch-get of report\\uD806 is refused and leaves the entry of report\\uFFFD alone', async () => {
    // Prepare: the victim item, cached.
    const victim = item('users', 'report\uFFFD');
    assert.equal((await call(app, 'PUT', victim, { body: { owner: 'ada' } })).status, 200);
    assert.equal((await call(app, 'GET', victim)).headers['x-cache'], 'hit');
    // Act: its twins (one lone surrogate each, which ioredis would write as U+FFFD).
    for (const twin of ['report\uD806', 'report\uDC00']) {
      const r = await call(app, 'POST', '/tables/users/batch-get', { body: { keys: [{ userId: twin }] } });
      // Assess: refused, naming the key, and the victim still reads as itself, from its entry.
      assertError(r, 400, 'ValidationError');
      assert.match(r.json.error.message, /^keys\[0\]\.userId: .*lone UTF-16 surrogate/);
    }
    const after = await call(app, 'GET', victim);
    assert.equal(after.status, 200);
    assert.equal(after.headers['x-cache'], 'hit');
    assert.deepEqual(after.json, { userId: 'report\uFFFD', owner: 'ada' });
    // The same for the library's other doors: cursors, key values in bodies.
    assert.throws(() => cache.resolve('users', { userId: 'report\uD806' }), ValidationError);
    await assert.rejects(cache.queryPartition('orders', 'c', { cursor: { customerId: 'c', orderId: 'o\uDC00' } }), (e: unknown) => {
      return e instanceof ValidationError && e.field === 'cursor.orderId';
    });
    assertError(await call(app, 'PUT', item('users', 'x'), { body: { userId: 'x\uD806' } }), 400, 'ValidationError');
  });

  test('G6: a stream record keyed report\\uD806 is skipped, not applied to the entry of report\\uFFFD', async () => {
    const victim = { userId: 'stream\uFFFD' };
    await cache.put('users', { ...victim, v: 1 });
    assert.equal((await cache.get('users', victim)).cache, 'hit');
    const res = await createStreamHandler(cache)(batch(streamRecord(stack, 'users', { userId: { S: 'stream\uD806' } }, '1')));
    // Skipped (nothing can be cached under an ill-formed key), not failed: retrying would block the shard.
    assert.deepEqual(res, { batchItemFailures: [] });
    assert.equal((await cache.get('users', victim)).cache, 'hit', 'the other item’s entry was not invalidated');
  });

  test('PUT and PATCH: attribute names and string values with a lone surrogate are 400 naming the attribute', async () => {
    const path = item('users', 'names');
    assert.equal((await call(app, 'PUT', path, { body: { a: 1 } })).status, 200);
    const cases: [method: string, body: object, field: RegExp][] = [
      ['PUT', { ['n\uD806']: 1 }, /^item\.n\uD806: /],
      ['PATCH', { ['n\uDC00']: 1 }, /^set\.n\uDC00: /],
      ['PATCH', { ['n\uDC00']: null }, /^remove\.n\uDC00: /],
      ['PUT', { s: 'x\uD806' }, /^item\.s: /],
      ['PATCH', { s: 'x\uDC00' }, /^set\.s: /],
      ['PUT', { tags: { $set: ['ok', 'x\uD806'] } }, /^item\.tags: /],
      ['PUT', { m: { deep: ['x', { ['k\uDBFF']: 1 }] } }, /^item\.m\.deep\[1\]\.k\uDBFF: /],
      ['PATCH', { m: { deep: ['x', 'y\uDFFF'] } }, /^set\.m\.deep\[1\]: /],
    ];
    for (const [method, body, field] of cases) {
      const r = await call(app, method, path, { body });
      assertError(r, 400, 'ValidationError');
      assert.match(r.json.error.message, field, JSON.stringify(body));
    }
    // Nothing was written; U+FFFD and surrogate pairs are ordinary text.
    const ok = await call(app, 'PATCH', path, { body: { s: 'x\uFFFD\uD83D\uDE00', ['n\uFFFD']: 'y' } });
    assert.equal(ok.status, 200);
    assert.deepEqual((await call(app, 'GET', path)).json, { userId: 'names', a: 1, s: 'x\uFFFD😀', ['n\uFFFD']: 'y' });
  });

  test('G4: a lone surrogate written around the library (DynamoDB Local keeps it) reads back the same from DynamoDB and from the cache', async () => {
    // Prepare: DynamoDB Local stores and returns the lone surrogate as it was sent.
    const Key = { userId: { S: 'around' } };
    await stack.dynamo.send(
      new PutItemCommand({
        TableName: `${stack.prefix}users`,
        Item: { ...Key, s: { S: 'x\uD806' }, ['n\uDC00']: { SS: ['a\uDBFF', 'b'] }, _version: { N: '1' } },
      }),
    );
    const direct = await stack.dynamo.send(new GetItemCommand({ TableName: `${stack.prefix}users`, Key, ConsistentRead: true }));
    assert.equal(direct.Item?.s?.S, 'x\uD806');
    // Act: a miss (fill), then a hit, through the library and through HTTP.
    const miss = await cache.get('users', { userId: 'around' });
    const hit = await cache.get('users', { userId: 'around' });
    // Assess: exactly what DynamoDB holds, whichever way it came.
    assert.equal(miss.cache, 'miss');
    assert.equal(hit.cache, 'hit');
    for (const r of [miss, hit]) {
      assert.equal(r.item?.s, 'x\uD806');
      assert.deepEqual(r.item?.['n\uDC00'], new Set(['a\uDBFF', 'b']));
    }
    const http = await app(apiEvent('GET', item('users', 'around')));
    assert.equal(http.headers?.['x-cache'], 'hit');
    const body = JSON.parse(http.body ?? '');
    assert.equal(body.s, 'x\uD806');
  });

  test(`attribute names: over ${MAX_ATTRIBUTE_NAME_BYTES} bytes are 400 before anything is written; the item stays readable`, async () => {
    const path = item('users', 'long-names');
    assert.equal((await call(app, 'PUT', path, { body: { a: 1 } })).status, 200);
    // The 65,535-byte name DynamoDB Local stores through UpdateItem and then fails every GetItem on.
    for (const [method, name] of [
      ['PATCH', 'n'.repeat(65_535)],
      ['PUT', 'n'.repeat(MAX_ATTRIBUTE_NAME_BYTES + 1)],
      ['PATCH', 'é'.repeat(MAX_ATTRIBUTE_NAME_BYTES / 2 + 1)],
    ] as const) {
      const r = await call(app, method, path, { body: { [name]: 1 } });
      assertError(r, 400, 'ValidationError');
      assert.match(
        r.json.error.message,
        new RegExp(`^(item|set)\\.${name[0]}{32}…\\(${name.length} characters\\): .*${MAX_ATTRIBUTE_NAME_BYTES} bytes`),
      );
      assert.ok(r.text!.length < 500, 'the error does not echo the name back');
    }
    const removal = await call(app, 'PATCH', path, { body: { ['n'.repeat(65_535)]: null } });
    assertError(removal, 400, 'ValidationError');
    const read = await call(app, 'GET', path);
    assert.equal(read.status, 200);
    assert.deepEqual(read.json, { userId: 'long-names', a: 1 });
    // At the limit: stored, and read back from DynamoDB and from the cache.
    const longest = 'm'.repeat(MAX_ATTRIBUTE_NAME_BYTES);
    assert.equal((await call(app, 'PATCH', path, { body: { [longest]: 2 } })).status, 200);
    const rk = cache.resolve('users', { userId: 'long-names' });
    await cache.nodeFor(rk)!.client.del(rk.redisKey);
    for (const source of ['miss', 'hit']) {
      const r = await call(app, 'GET', path);
      assert.equal(r.status, 200, r.text?.slice(0, 200));
      assert.equal(r.headers['x-cache'], source);
      assert.equal(r.json[longest], 2);
    }
  });
});
