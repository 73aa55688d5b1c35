import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import fc from 'fast-check';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { freePort } from '../helpers/ports.ts';
import { defineTable, exampleTables, NumberValue, sharedItemCache, type ItemCache } from '../../lib/index.ts';
import { createHttpApp, type HttpHandler, type Route } from '../../functions/http/app.ts';
import { allRoutes, healthRoutes, readRoutes, writeRoutes } from '../../functions/http/routes.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import { parseJsonExact } from '../../functions/http/json.ts';
import { apiEvent, assertError, call, type Answer, type RequestOptions } from '../helpers/api-event.ts';

/** The example tables plus one keyed by binary, to cover B keys in paths. */
const TABLES = [...exampleTables, defineTable({ name: 'blobs', hashKey: { name: 'id', type: 'B' } })];

const item = (table: string, ...key: (string | number)[]): string =>
  `/tables/${table}/items/${key.map((k) => encodeURIComponent(String(k))).join('/')}`;

describe('HTTP API', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let app: HttpHandler;
  before(async () => {
    stack = await startStack({ tables: TABLES });
    cache = stack.cache();
    app = createHttpApp(cache, allRoutes);
  });
  after(async () => stack.stop());

  async function evict(table: string, key: Record<string, unknown>): Promise<void> {
    const rk = cache.resolve(table, key);
    await cache.nodeFor(rk)!.client.del(rk.redisKey);
  }

  test('GET: x-cache goes miss → hit → (after PUT) hit with the new value; ETag carries the version', async () => {
    // Written around the cache, so the first read has to fill.
    await stack.dynamo.send(
      new PutItemCommand({ TableName: `${stack.prefix}users`, Item: { userId: { S: 'xc' }, name: { S: 'Ada' }, _version: { N: '1' } } }),
    );
    const miss = await call(app, 'GET', item('users', 'xc'));
    assert.equal(miss.status, 200);
    assert.equal(miss.headers['x-cache'], 'miss');
    assert.equal(miss.headers.ETag, '"1"');
    assert.equal(miss.headers['Content-Type'], 'application/json');
    assert.deepEqual(miss.json, { userId: 'xc', name: 'Ada' });
    const hit = await call(app, 'GET', item('users', 'xc'));
    assert.equal(hit.headers['x-cache'], 'hit');
    assert.deepEqual(hit.json, miss.json);
    const put = await call(app, 'PUT', item('users', 'xc'), { body: { name: 'Grace' } });
    assert.equal(put.status, 200);
    assert.deepEqual(put.json, { userId: 'xc', name: 'Grace' });
    assert.equal(put.headers.ETag, '"2"');
    const after = await call(app, 'GET', item('users', 'xc'));
    assert.equal(after.headers['x-cache'], 'hit');
    assert.deepEqual(after.json, { userId: 'xc', name: 'Grace' });
    assert.equal(after.headers.ETag, '"2"');
  });

  test('GET of a missing item is 404 (and cached as missing); an unknown table is 404', async () => {
    const a = await call(app, 'GET', item('users', 'nobody'));
    assertError(a, 404, 'ItemNotFound');
    assert.equal(a.headers['x-cache'], 'miss');
    const b = await call(app, 'GET', item('users', 'nobody'));
    assertError(b, 404, 'ItemNotFound');
    assert.equal(b.headers['x-cache'], 'hit');
    assertError(await call(app, 'GET', item('nosuch', 'x')), 404, 'UnknownTable');
    assertError(await call(app, 'PUT', item('nosuch', 'x'), { body: {} }), 404, 'UnknownTable');
    assertError(await call(app, 'POST', '/tables/nosuch/batch-get', { body: { keys: [] } }), 404, 'UnknownTable');
    assertError(await call(app, 'GET', item('orders', 'c', 'o')), 404, 'ItemNotFound');
  });

  test('routing: unknown route 404, known path with a wrong method 405 with Allow, malformed %-escape 400', async () => {
    assertError(await call(app, 'GET', '/nothing/here'), 404, 'RouteNotFound');
    assertError(await call(app, 'GET', '/tables/users/items/'), 404, 'RouteNotFound');
    assertError(await call(app, 'GET', '/'), 404, 'RouteNotFound');
    const m = await call(app, 'POST', item('users', 'x'));
    assertError(m, 405, 'MethodNotAllowed');
    assert.equal(m.headers.Allow, 'GET, PUT, PATCH, DELETE');
    const h = await call(app, 'DELETE', '/health');
    assertError(h, 405);
    assert.equal(h.headers.Allow, 'GET');
    assertError(await call(app, 'GET', '/tables/batch-get/items'), 404);
    assertError(await call(app, 'GET', '/tables/users/items/%E0%A4%A'), 400, 'ValidationError');
    assertError(await call(app, 'GET', '/tables/users/items/%zz'), 400, 'ValidationError');
    assertError(await call(app, 'GET', '/tables/users/items/%ED%A0%80'), 400, 'ValidationError'); // a lone surrogate in UTF-8
  });

  test('the route groups serve only their own routes (one Lambda function each)', async () => {
    const read = createHttpApp(cache, readRoutes);
    const write = createHttpApp(cache, writeRoutes);
    const health = createHttpApp(cache, healthRoutes);
    assert.equal((await call(write, 'PUT', item('users', 'grp'), { body: { a: 1 } })).status, 200);
    assert.equal((await call(read, 'GET', item('users', 'grp'))).status, 200);
    assert.equal((await call(read, 'POST', '/tables/users/batch-get', { body: { keys: [{ userId: 'grp' }] } })).status, 200);
    const r = await call(read, 'PUT', item('users', 'grp'), { body: {} });
    assertError(r, 405);
    assert.equal(r.headers.Allow, 'GET');
    const w = await call(write, 'GET', item('users', 'grp'));
    assertError(w, 405);
    assert.equal(w.headers.Allow, 'PUT, PATCH, DELETE');
    assertError(await call(write, 'POST', '/tables/users/batch-get', { body: { keys: [] } }), 404, 'RouteNotFound');
    assertError(await call(health, 'GET', item('users', 'grp')), 404, 'RouteNotFound');
    assertError(await call(read, 'GET', '/health'), 404, 'RouteNotFound');
    assert.equal((await call(health, 'GET', '/health')).status, 200);
    assert.equal((await call(write, 'DELETE', item('users', 'grp'))).status, 204);
  });

  test('PUT: the key comes from the path; a body key that agrees is fine, one that disagrees is 400', async () => {
    const ok = await call(app, 'PUT', item('orders', 'c1', 'o1'), { body: { total: 10, items: ['a', 'b'], paid: false, note: null } });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json, { customerId: 'c1', orderId: 'o1', total: 10, items: ['a', 'b'], paid: false, note: null });
    assert.equal(ok.headers.ETag, '"1"');
    const same = await call(app, 'PUT', item('orders', 'c1', 'o1'), { body: { ...ok.json, total: 11 } });
    assert.equal(same.status, 200);
    assert.equal(same.json.total, 11);
    assertError(await call(app, 'PUT', item('orders', 'c1', 'o1'), { body: { orderId: 'o2', total: 1 } }), 400, 'ValidationError');
    assertError(await call(app, 'PUT', item('orders', 'c1', 'o1'), { body: { customerId: 7 } }), 400, 'ValidationError');
    assertError(await call(app, 'PUT', item('readings', 's1', 5), { body: { ts: 6 } }), 400);
    // The same number spelled differently is the same key.
    assert.equal((await call(app, 'PUT', item('readings', 's1', 5), { body: { ts: 5.0, v: 1 } })).status, 200);
    assert.equal((await call(app, 'GET', item('orders', 'c1', 'o1'))).json.total, 11);
  });

  test('PUT: malformed JSON, bad bodies, wrong key types and reserved attributes are 400', async () => {
    const path = item('users', 'bad');
    for (const body of [
      '',
      '   ',
      '{',
      '{"a":1,}',
      "{'a':1}",
      'null',
      '[]',
      '[{"a":1}]',
      '"text"',
      '12',
      'true',
      '{"a":1} x',
      '\uFEFF{"a":1}',
      '{"a":NaN}',
    ]) {
      assertError(await call(app, 'PUT', path, { body }), 400, 'ValidationError');
    }
    assertError(await call(app, 'PUT', path), 400, 'ValidationError');
    assertError(await call(app, 'PUT', path, { body: { _version: 3 } }), 400);
    assertError(await call(app, 'PUT', path, { body: { '': 1 } }), 400);
    assertError(await call(app, 'PUT', path, { body: { s: { $set: [] } } }), 400);
    assertError(await call(app, 'PUT', path, { body: { s: { $set: ['a', 1] } } }), 400);
    assertError(await call(app, 'PUT', path, { body: { s: { $set: 'a' } } }), 400);
    assertError(await call(app, 'PUT', path, { body: { b: { $base64: 'not base64!' } } }), 400);
    assertError(await call(app, 'PUT', path, { body: { b: { $base64: 12 } } }), 400);
    assertError(await call(app, 'PUT', path, { body: { m: { $map: [1] } } }), 400);
    assertError(await call(app, 'PUT', path, { body: '{"n": 1e400}' }), 400);
    assertError(await call(app, 'PUT', path, { body: '{"n": 1e-400}' }), 400);
    assertError(await call(app, 'PUT', path, { body: '{"n": 123456789012345678901234567890123456789}' }), 400); // 39 digits
    // Wrong key types in the path.
    assertError(await call(app, 'PUT', item('readings', 's1', 'noon'), { body: { v: 1 } }), 400, 'ValidationError');
    assertError(await call(app, 'GET', item('readings', 's1', ' 5')), 400);
    assertError(await call(app, 'GET', item('readings', 's1', '0x10')), 400);
    assertError(await call(app, 'GET', item('readings', 's1', 'Infinity')), 400);
    assertError(await call(app, 'GET', item('readings', 's1', '1e200')), 400);
    assertError(await call(app, 'GET', item('blobs', '***')), 400);
    // A key the table does not have, or lacks.
    assertError(await call(app, 'PUT', item('users', 'u', 'extra'), { body: {} }), 400);
    assertError(await call(app, 'PUT', item('orders', 'c1'), { body: {} }), 400);
    assertError(await call(app, 'DELETE', item('orders', 'c1')), 400);
    assertError(await call(app, 'GET', item('users', 'x'.repeat(2049))), 400);
    assert.equal((await call(app, 'GET', item('users', 'bad'))).status, 404, 'nothing was written');
  });

  test('bodies: base64-encoded bodies are decoded; one that is not UTF-8 is 400', async () => {
    const put = await call(app, 'PUT', item('users', 'b64'), { body: { name: 'Zoë' }, base64: true });
    assert.equal(put.status, 200);
    assert.equal(put.json.name, 'Zoë');
    const ev = apiEvent('PUT', item('users', 'b64'));
    ev.body = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('base64');
    ev.isBase64Encoded = true;
    const res = await app(ev);
    assert.equal(res.statusCode, 400);
  });

  test('PATCH: sets attributes, null removes one, keys cannot change, a missing item is 404', async () => {
    const path = item('orders', 'c2', 'o1');
    await call(app, 'PUT', path, { body: { total: 1, note: 'x', tags: { $set: ['a'] } } });
    const p = await call(app, 'PATCH', path, { body: { total: 2, note: null, extra: { nested: [1, 'two'] } } });
    assert.equal(p.status, 200);
    assert.deepEqual(p.json, { customerId: 'c2', orderId: 'o1', total: 2, tags: { $set: ['a'] }, extra: { nested: [1, 'two'] } });
    assert.equal(p.headers.ETag, '"2"');
    const g = await call(app, 'GET', path);
    assert.deepEqual(g.json, p.json);
    assert.equal(g.headers.ETag, '"2"');
    // Repeating the key is allowed (a GET answer sent back), changing or removing it is not.
    assert.equal((await call(app, 'PATCH', path, { body: { ...g.json, total: 3 } })).status, 200);
    assertError(await call(app, 'PATCH', path, { body: { orderId: 'o9' } }), 400, 'ValidationError');
    assertError(await call(app, 'PATCH', path, { body: { customerId: null } }), 400, 'ValidationError');
    assertError(await call(app, 'PATCH', path, { body: { _version: 9 } }), 400, 'ValidationError');
    assertError(await call(app, 'PATCH', path, { body: { _version: null } }), 400, 'ValidationError');
    assertError(await call(app, 'PATCH', path, { body: '[1]' }), 400);
    assertError(await call(app, 'PATCH', item('orders', 'c2', 'nope'), { body: { total: 1 } }), 404, 'ItemNotFound');
    assertError(await call(app, 'PATCH', item('orders', 'c2', 'nope'), { body: { total: 1 }, headers: { 'If-Match': '*' } }), 404);
    assertError(await call(app, 'GET', item('orders', 'c2', 'nope')), 404);
    assert.equal((await call(app, 'GET', path)).json.total, 3);
  });

  test('DELETE: 204 whether or not the item existed', async () => {
    await call(app, 'PUT', item('users', 'del'), { body: { a: 1 } });
    const d = await call(app, 'DELETE', item('users', 'del'));
    assert.equal(d.status, 204);
    assert.equal(d.text, undefined);
    assertError(await call(app, 'GET', item('users', 'del')), 404);
    assert.equal((await call(app, 'DELETE', item('users', 'del'))).status, 204);
    assert.equal((await call(app, 'DELETE', item('users', 'never-was'))).status, 204);
  });

  test('If-Match: a stale ETag is 412 with nothing written; quoted or bare; * means the item must exist', async () => {
    const path = item('users', 'im');
    const v1 = await call(app, 'PUT', path, { body: { n: 1 } });
    assert.equal(v1.headers.ETag, '"1"');
    const v2 = await call(app, 'PUT', path, { body: { n: 2 }, headers: { 'If-Match': '"1"' } });
    assert.equal(v2.status, 200);
    assert.equal(v2.headers.ETag, '"2"');
    assertError(await call(app, 'PUT', path, { body: { n: 3 }, headers: { 'If-Match': '"1"' } }), 412, 'VersionMismatch');
    assertError(await call(app, 'PATCH', path, { body: { n: 3 }, headers: { 'If-Match': '"1"' } }), 412, 'VersionMismatch');
    assertError(await call(app, 'DELETE', path, { headers: { 'if-match': '1' } }), 412, 'VersionMismatch');
    const g = await call(app, 'GET', path);
    assert.deepEqual(g.json, { userId: 'im', n: 2 });
    assert.equal(g.headers.ETag, '"2"');
    const v3 = await call(app, 'PATCH', path, { body: { n: 3 }, headers: { 'If-Match': '2' } });
    assert.equal(v3.headers.ETag, '"3"');
    const v4 = await call(app, 'PUT', path, { body: { n: 4 }, headers: { 'If-Match': '*' } });
    assert.equal(v4.status, 200);
    assert.equal(v4.headers.ETag, '"4"');
    // `*` and explicit versions on a missing item: PUT and DELETE are 412.
    assertError(await call(app, 'PUT', item('users', 'im-none'), { body: { n: 1 }, headers: { 'If-Match': '*' } }), 412);
    assertError(await call(app, 'PUT', item('users', 'im-none'), { body: { n: 1 }, headers: { 'If-Match': '"1"' } }), 412);
    assertError(await call(app, 'DELETE', item('users', 'im-none'), { headers: { 'If-Match': '*' } }), 412);
    assertError(await call(app, 'GET', item('users', 'im-none')), 404, 'ItemNotFound');
    // Malformed conditions are refused before anything is written.
    for (const h of ['W/"4"', '"4", "5"', 'abc', '""', '"-1"']) {
      assertError(await call(app, 'PUT', path, { body: { n: 99 }, headers: { 'If-Match': h } }), 400, 'ValidationError');
    }
    assert.equal((await call(app, 'DELETE', path, { headers: { 'If-Match': '*' } })).status, 204);
    assertError(await call(app, 'GET', path), 404);
  });

  test('POST batch-get: items and missing keys; at most 100 keys', async () => {
    for (const ts of [1, 2, 3]) await call(app, 'PUT', item('readings', 'bg', ts), { body: { v: ts * 10 } });
    const r = await call(app, 'POST', '/tables/readings/batch-get', {
      body: {
        keys: [
          { sensorId: 'bg', ts: 1 },
          { sensorId: 'bg', ts: 3 },
          { sensorId: 'bg', ts: 4 },
          { sensorId: 'other', ts: 1 },
        ],
      },
    });
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.json.items.sort((a: { ts: number }, b: { ts: number }) => a.ts - b.ts),
      [
        { sensorId: 'bg', ts: 1, v: 10 },
        { sensorId: 'bg', ts: 3, v: 30 },
      ],
    );
    assert.deepEqual(r.json.missing, [
      { sensorId: 'bg', ts: 4 },
      { sensorId: 'other', ts: 1 },
    ]);
    const empty = await call(app, 'POST', '/tables/readings/batch-get', { body: { keys: [] } });
    assert.deepEqual(empty.json, { items: [], missing: [] });
    const hundred = Array.from({ length: 100 }, (_, i) => ({ sensorId: 'bg', ts: i }));
    const ok = await call(app, 'POST', '/tables/readings/batch-get', { body: { keys: hundred } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.items.length + ok.json.missing.length, 100);
    assertError(await call(app, 'POST', '/tables/readings/batch-get', { body: { keys: [...hundred, { sensorId: 'bg', ts: 100 }] } }), 400);
    assertError(await call(app, 'POST', '/tables/readings/batch-get', { body: { keys: {} } }), 400);
    assertError(await call(app, 'POST', '/tables/readings/batch-get', { body: {} }), 400);
    assertError(await call(app, 'POST', '/tables/readings/batch-get', { body: { keys: [{ sensorId: 'bg', ts: '1' }] } }), 400);
    assertError(await call(app, 'POST', '/tables/readings/batch-get', { body: { keys: [{ sensorId: 'bg' }] } }), 400);
    assertError(await call(app, 'POST', '/tables/readings/batch-get', { body: { keys: [null] } }), 400);
    assertError(await call(app, 'POST', '/tables/readings/batch-get', { body: '{"keys": [' }), 400);
    assertError(await call(app, 'POST', '/tables/readings/batch-get'), 400);
  });

  test('GET a partition: pages of at most `limit`, a cursor to the next, served from DynamoDB', async () => {
    for (let ts = 1; ts <= 5; ts++) await call(app, 'PUT', item('readings', 'part', ts), { body: { v: ts } });
    const seen: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const res = await call(app, 'GET', `${item('readings', 'part')}?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-cache'], 'bypass');
      assert.ok(res.json.items.length <= 2);
      for (const it of res.json.items) {
        assert.equal(it.sensorId, 'part');
        assert.equal(it.v, it.ts);
        seen.push(it.ts);
      }
      cursor = res.json.next;
      pages++;
    } while (cursor !== undefined && pages < 10);
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    const all = await call(app, 'GET', item('readings', 'part'));
    assert.equal(all.json.items.length, 5);
    assert.equal(all.json.next, undefined);
    assert.deepEqual((await call(app, 'GET', item('readings', 'no-such-sensor'))).json, { items: [] });
    assertError(await call(app, 'GET', `${item('readings', 'part')}?limit=101`), 400);
    assertError(await call(app, 'GET', `${item('readings', 'part')}?limit=0`), 400);
    assertError(await call(app, 'GET', `${item('readings', 'part')}?limit=two`), 400);
    assertError(await call(app, 'GET', `${item('readings', 'part')}?cursor=%%%`), 400);
    assertError(await call(app, 'GET', `${item('readings', 'part')}?cursor=bm90IGpzb24`), 400);
    // A cursor from another partition does not page this one.
    const other = await call(app, 'GET', `${item('readings', 'part')}?limit=1`);
    assertError(await call(app, 'GET', `${item('readings', 'elsewhere')}?cursor=${other.json.next}`), 400);
  });

  test('exact numbers: big and precise numbers round-trip through PUT and GET bodies digit for digit', async () => {
    const body =
      '{"big": 123456789012345678901234567890, "beyond53": 9007199254740993, "precise": 3.141592653589793238462643383279,' +
      ' "tiny": 0.000000000000000000000000000001234, "neg": -12345678901234567890.5, "plain": 1.5, "safe": 9007199254740991,' +
      ' "list": [98765432109876543210, {"deep": 0.10000000000000000000000000001}], "ns": {"$set": [1, 11111111111111111111111]},' +
      ' "text": "12345678901234567890123456789 stays a string", "12345678901234567890": "a key that looks like a number"}';
    const put = await call(app, 'PUT', item('users', 'nums'), { body });
    assert.equal(put.status, 200, put.text);
    const get = await call(app, 'GET', item('users', 'nums'));
    for (const digits of [
      '"big":123456789012345678901234567890',
      '"beyond53":9007199254740993',
      '"precise":3.141592653589793238462643383279',
      '"tiny":0.000000000000000000000000000001234',
      '"neg":-12345678901234567890.5',
      '"plain":1.5',
      '"safe":9007199254740991',
      '[98765432109876543210,{"deep":0.10000000000000000000000000001}]',
      '11111111111111111111111',
      '"text":"12345678901234567890123456789 stays a string"',
      '"12345678901234567890":"a key that looks like a number"',
    ]) {
      assert.ok(get.text!.includes(digits), `${digits} in ${get.text}`);
      assert.ok(put.text!.includes(digits), `${digits} in the PUT answer`);
    }
    assert.deepEqual(parseJsonExact(get.text!), { ...(parseJsonExact(body) as object), userId: 'nums' });
    // And DynamoDB itself holds the exact digits.
    const raw = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: 'nums' } }, ConsistentRead: true }),
    );
    assert.equal(raw.Item?.big?.N, '123456789012345678901234567890');
    assert.equal(raw.Item?.beyond53?.N, '9007199254740993');
    assert.equal(raw.Item?.tiny?.N, '0.000000000000000000000000000001234');
    // What GET answers can be PUT back unchanged.
    const again = await call(app, 'PUT', item('users', 'nums'), { body: get.text! });
    assert.equal(again.status, 200);
    assert.equal(again.text, get.text);
  });

  test('binary, sets and $-shaped maps: what GET answers can be PUT back unchanged', async () => {
    const body = {
      blob: { $base64: Buffer.from([0, 1, 2, 254, 255]).toString('base64') },
      empty: { $base64: '' },
      ss: { $set: ['a', 'b'] },
      ns: { $set: [1, 2.5] },
      bs: { $set: [{ $base64: 'AA==' }, { $base64: 'AQ==' }] },
      list: [{ $base64: 'Zm9v' }, { nested: { $set: ['x'] } }],
      literal: { $map: { $set: 'not a set' } },
      twoKeys: { $set: 1, other: 2 },
      $set: 'top-level attribute names are never tags',
    };
    const put = await call(app, 'PUT', item('users', 'types'), { body });
    assert.equal(put.status, 200, put.text);
    const stored = await cache.get('users', { userId: 'types' });
    assert.deepEqual(stored.item?.blob, Uint8Array.from([0, 1, 2, 254, 255]));
    assert.deepEqual(stored.item?.ss, new Set(['a', 'b']));
    assert.deepEqual(stored.item?.ns, new Set([1, 2.5]));
    assert.deepEqual(stored.item?.literal, { $set: 'not a set' });
    assert.deepEqual(stored.item?.twoKeys, { $set: 1, other: 2 });
    assert.equal(stored.item?.$set, 'top-level attribute names are never tags');
    const get = await call(app, 'GET', item('users', 'types'));
    assert.deepEqual(get.json, { ...body, userId: 'types' });
    const again = await call(app, 'PUT', item('users', 'types'), { body: get.text! });
    assert.equal(again.status, 200);
    assert.deepEqual(again.json, get.json);
    assert.deepEqual((await cache.get('users', { userId: 'types' })).item, stored.item);
  });

  test('sets: a value listed twice is one member, whatever its spelling', async () => {
    const put = await call(app, 'PUT', item('users', 'dups'), {
      body: '{"ns": {"$set": [1, 1.0, 1e0, 123456789012345678901234567890, 1.23456789012345678901234567890e29]}, "ss": {"$set": ["a", "a"]}, "bs": {"$set": [{"$base64": "AA=="}, {"$base64": "AA"}]}}',
    });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(parseJsonExact(put.text!), {
      userId: 'dups',
      ns: { $set: [1, new NumberValue('123456789012345678901234567890')] },
      ss: { $set: ['a'] },
      bs: { $set: [{ $base64: 'AA==' }] },
    });
  });

  /** The query form's URL of a key, encoded as encodeURIComponent does (`+` as %2B, space as %20). */
  const queryItem = (table: string, hash: string, range?: string): string =>
    `/tables/${table}/item?hash=${encodeURIComponent(hash)}${range === undefined ? '' : `&range=${encodeURIComponent(range)}`}`;

  /** The item as DynamoDB holds it, read around the library: the key the request really addressed. */
  async function stored(table: string, key: Record<string, string>) {
    const Key = Object.fromEntries(Object.entries(key).map(([k, v]) => [k, { S: v }]));
    return (await stack.dynamo.send(new GetItemCommand({ TableName: `${stack.prefix}${table}`, Key, ConsistentRead: true }))).Item;
  }

  test('the query form carries any key: /, %, +, spaces, unicode, empty parts between slashes', async () => {
    const awkward = ['a/b', '/', '//', '/a/', '100%', '%2F', '%252F', 'a+b', ' spaced ', 'Zoë 😀', 'a?b#c&d=e+f', '..', 'x%zz'];
    for (const userId of awkward) {
      const put = await call(app, 'PUT', queryItem('users', userId), { body: { who: userId } });
      assert.equal(put.status, 200, `${userId}: ${put.text}`);
      assert.equal(put.json.userId, userId);
      assert.equal((await stored('users', { userId }))?.who?.S, userId, `${userId}: DynamoDB holds it under exactly that key`);
      const get = await call(app, 'GET', queryItem('users', userId));
      assert.deepEqual(get.json, { userId, who: userId }, userId);
      const patched = await call(app, 'PATCH', queryItem('users', userId), { body: { n: 1 } });
      assert.deepEqual(patched.json, { userId, who: userId, n: 1 }, userId);
    }
    // Range keys made of slashes and empty parts between them, and a hash that is all slashes.
    const pairs: [string, string][] = [
      ['c/1', 'o//1'],
      ['c/1', '/'],
      ['c/1', 'x/'],
      ['//', '//'],
      ['c 2', 'ü+1'],
    ];
    for (const [customerId, orderId] of pairs) {
      const put = await call(app, 'PUT', queryItem('orders', customerId, orderId), { body: { total: 1 } });
      assert.equal(put.status, 200, `${customerId} ${orderId}: ${put.text}`);
      assert.ok(await stored('orders', { customerId, orderId }), `${customerId} ${orderId} is in DynamoDB`);
      assert.deepEqual((await call(app, 'GET', queryItem('orders', customerId, orderId))).json, { customerId, orderId, total: 1 });
    }
    // A partition whose hash holds '/': paged by the query form too.
    const page = await call(app, 'GET', `/tables/orders/items?hash=${encodeURIComponent('c/1')}&limit=10`);
    assert.equal(page.status, 200, page.text);
    assert.deepEqual(
      page.json.items.map((i: { orderId: string }) => i.orderId),
      ['/', 'o//1', 'x/'],
    );
    // Deleted by the query form: gone from DynamoDB and from the API.
    assert.equal((await call(app, 'DELETE', queryItem('orders', 'c/1', 'o//1'))).status, 204);
    assert.equal(await stored('orders', { customerId: 'c/1', orderId: 'o//1' }), undefined);
    assertError(await call(app, 'GET', queryItem('orders', 'c/1', 'o//1')), 404);
  });

  test('the query form is form-encoded: + is a space, %2B a plus; both spellings of a key reach one item', async () => {
    await call(app, 'PUT', queryItem('users', 'plus+sign'), { body: { v: 'plus' } });
    await call(app, 'PUT', queryItem('users', 'plus sign'), { body: { v: 'space' } });
    assert.equal((await call(app, 'GET', '/tables/users/item?hash=plus%2Bsign')).json.v, 'plus');
    assert.equal((await call(app, 'GET', '/tables/users/item?hash=plus+sign')).json.v, 'space');
    assert.equal((await call(app, 'GET', '/tables/users/item?hash=plus%20sign')).json.v, 'space');
    // What URLSearchParams writes (serverless-offline re-serializes the query this way) reads back the same.
    const form = new URLSearchParams({ hash: 'Zoë /+%' }).toString();
    await call(app, 'PUT', queryItem('users', 'Zoë /+%'), { body: { v: 'form' } });
    assert.equal((await call(app, 'GET', `/tables/users/item?${form}`)).json.v, 'form');
  });

  test('the query form refuses a key it cannot read as one: missing, repeated, unknown or empty parts, each by name', async () => {
    const refused: [string, RegExp][] = [
      ['/tables/users/item', /query\.hash.*is required.*item\?hash=<userId>/],
      ['/tables/users/item?hash=a&hash=b', /query\.hash.*more than once/],
      ['/tables/users/item?hash=a&range=b', /query\.range.*not a parameter here/],
      ['/tables/users/item?hash=a&rnage=b', /query\.rnage.*not a parameter here/],
      ['/tables/orders/item?hash=c', /query\.range.*is required.*&range=<orderId>/],
      ['/tables/orders/item?hash=c&range=', /orderId.*must not be empty/],
      ['/tables/orders/item?hash=&range=o', /customerId.*must not be empty/],
      ['/tables/readings/item?hash=s&range=', /ts/],
      ['/tables/users/items?hash=a', /no range key/],
      ['/tables/orders/items', /query\.hash.*is required/],
    ];
    for (const [path, message] of refused) {
      const res = await call(app, 'GET', path);
      assertError(res, 400);
      assert.match(res.json.error.message, message, path);
    }
    assertError(await call(app, 'PUT', '/tables/orders/item?hash=c&range=', { body: {} }), 400);
  });

  test('the path form: keys without / or % as before; one that a gateway could read two ways is refused, pointing to the query form', async () => {
    for (const userId of ['x:y:z', '{tag}', 'Zoë 😀', '..', ' spaced ', 'a?b#c&d=e+f', 'plain']) {
      const path = item('users', userId);
      const put = await call(app, 'PUT', path, { body: { who: userId } });
      assert.equal(put.status, 200, `${userId}: ${put.text}`);
      assert.equal(put.json.userId, userId);
      // The path form and the query form address the same item.
      assert.deepEqual((await call(app, 'GET', queryItem('users', userId))).json, { userId, who: userId });
    }
    // A REST API or serverless-offline hands these over still encoded; an HTTP API would hand over
    // 'a/b' (another route) and '100%' (then decoded a second time). Refused on every flavour.
    for (const path of [
      '/tables/users/items/a%2Fb',
      '/tables/users/items/100%25',
      '/tables/users/items/%252F',
      '/tables/orders/items/c%2F1/o1',
    ]) {
      const res = await call(app, 'GET', path);
      assertError(res, 400);
      assert.match(res.json.error.message, /item\?hash=/, path);
    }
    assertError(await call(app, 'GET', '/tables/users/items/100%'), 400); // a bare %, as an HTTP API decodes '%25'
    // What an HTTP API hands over for /tables/users/items/a%2Fb: a second segment, which users has no place for.
    const decoded = await call(app, 'GET', '/tables/users/items/a/b');
    assertError(decoded, 400);
    assert.match(decoded.json.error.message, /no range key.*item\?hash=/);
    // Had the gateway matched the route before decoding, the segments outnumber the route's: refused too.
    const outnumbered = await call(app, 'GET', '/tables/orders/items/c/1/o1', { routeKey: 'GET /tables/{table}/items/{hash}/{range}' });
    assertError(outnumbered, 400);
    assert.match(outnumbered.json.error.message, /6 segments where its route .* has 5/);
    // A path of the route's own length is served as before.
    await call(app, 'PUT', item('orders', 'c1', 'o1'), { body: {} });
    const matched = await call(app, 'GET', '/tables/orders/items/c1/o1', { routeKey: 'GET /tables/{table}/items/{hash}/{range}' });
    assert.equal(matched.status, 200, matched.text);
  });

  test('numeric range keys (readings/ts): parsed as numbers, any spelling of a value is one key, big ones stay exact', async () => {
    const put = await call(app, 'PUT', item('readings', 'num', 1700000000000), { body: { celsius: 21.5 } });
    assert.deepEqual(put.json, { sensorId: 'num', ts: 1700000000000, celsius: 21.5 });
    for (const spelling of ['1700000000000', '1.7e12', '1700000000000.000', '+1700000000000', '01700000000000']) {
      const g = await call(app, 'GET', item('readings', 'num', spelling));
      assert.equal(g.status, 200, spelling);
      assert.equal(g.json.ts, 1700000000000);
    }
    for (const ts of ['-5', '0.001', '123456789012345678901234567890', '-0.000000000000000000000000000000001']) {
      const p = await call(app, 'PUT', item('readings', 'num', ts), { body: { v: ts } });
      assert.equal(p.status, 200, p.text);
      const g = await call(app, 'GET', item('readings', 'num', ts));
      assert.ok(g.text!.includes(`"ts":${ts}`), g.text);
    }
    const part = await call(app, 'GET', item('readings', 'num'));
    assert.deepEqual(
      part.json.items.map((i: { v?: string }) => i.v ?? 'first'),
      ['-5', '-0.000000000000000000000000000000001', '0.001', 'first', '123456789012345678901234567890'],
      'in numeric order',
    );
    const batch = await call(app, 'POST', '/tables/readings/batch-get', {
      body: '{"keys": [{"sensorId": "num", "ts": 123456789012345678901234567890}]}',
    });
    assert.ok(batch.text!.includes('"ts":123456789012345678901234567890'), batch.text);
    assert.equal(batch.json.missing.length, 0);
  });

  test('binary keys: base64url in the path, base64 or base64url in the query, {"$base64"} in bodies', async () => {
    const bytes = Buffer.from([0xfb, 0xff, 0x00, 0x3e]);
    const std = bytes.toString('base64'); // '+/8APg=='
    const url = bytes.toString('base64url'); // '-_8APg'
    const put = await call(app, 'PUT', item('blobs', url), { body: { v: 1 } });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.json, { id: { $base64: std }, v: 1 });
    assert.equal((await call(app, 'GET', queryItem('blobs', std))).json.v, 1);
    assert.equal((await call(app, 'GET', queryItem('blobs', url))).json.v, 1);
    // Standard base64 holds '/': not in the path (see the path form's test).
    assertError(await call(app, 'GET', item('blobs', std)), 400);
    const batch = await call(app, 'POST', '/tables/blobs/batch-get', {
      body: { keys: [{ id: { $base64: std } }, { id: { $base64: 'AA==' } }] },
    });
    assert.deepEqual(batch.json, { items: [{ id: { $base64: std }, v: 1 }], missing: [{ id: { $base64: 'AA==' } }] });
    assertError(await call(app, 'PUT', item('blobs', url), { body: { id: { $base64: 'AA==' } } }), 400);
  });

  test("413: an item just over DynamoDB's 400 KB is refused; one just under is stored", async () => {
    const limit = 400 * 1024;
    // Item size = attribute names + values (UTF-8): userId(6) + 'big'(2) + big(3) + the string.
    const under = await call(app, 'PUT', item('users', 'big'), { body: { big: 'x'.repeat(limit - 1000) } });
    assert.equal(under.status, 200, under.text?.slice(0, 200));
    const over = await call(app, 'PUT', item('users', 'big'), { body: { big: 'x'.repeat(limit + 1) } });
    assertError(over, 413, 'ItemTooLarge');
    const patch = await call(app, 'PATCH', item('users', 'big'), { body: { more: 'y'.repeat(2000) } });
    assertError(patch, 413, 'ItemTooLarge');
    assert.equal((await call(app, 'GET', item('users', 'big'))).json.big.length, limit - 1000, 'the stored item is unchanged');
  });

  test('GET /health: every node with its status, no credentials', async () => {
    const res = await call(app, 'GET', '/health');
    assert.equal(res.status, 200);
    assert.equal(res.json.nodes.length, 3);
    for (const n of res.json.nodes) {
      assert.deepEqual(Object.keys(n).sort(), ['address', 'id', 'since', 'status']);
      assert.ok(['up', 'down', 'starting'].includes(n.status));
      assert.ok(!Number.isNaN(Date.parse(n.since)));
    }
    const port = await freePort();
    // Plain AUTH allowed: this node is never reached, only its address reported.
    const withSecret = stack.cache({ CACHE_NODES: `redis://admin:s3cr3t-pw@127.0.0.1:${port}`, CACHE_ALLOW_PLAIN_AUTH: '1' });
    const h = await call(createHttpApp(withSecret, healthRoutes), 'GET', '/health');
    assert.equal(h.status, 200);
    assert.equal(h.json.nodes.length, 1);
    assert.equal(h.json.nodes[0].address, `redis://127.0.0.1:${port}`);
    assert.ok(!h.text!.includes('s3cr3t') && !h.text!.includes('admin'), h.text);
  });

  test('an event whose body is null (serverless-offline sends that for no body) is an ordinary request', async () => {
    const get = await app({ ...apiEvent('GET', item('users', 'nobody-null')), body: null as unknown as undefined });
    assert.equal(get.statusCode, 404);
    const put = await app({ ...apiEvent('PUT', item('users', 'nobody-null')), body: null as unknown as undefined });
    assert.equal(put.statusCode, 400);
  });

  test('413 for a body over HTTP_MAX_BODY_BYTES, before anything is parsed', async () => {
    const small = createHttpApp(stack.cache({ HTTP_MAX_BODY_BYTES: '2048' }), allRoutes);
    const res = await call(small, 'PUT', item('users', 'huge'), { body: { blob: 'x'.repeat(3000) } });
    assertError(res, 413, 'PayloadTooLarge');
    assertError(
      await call(small, 'PUT', item('users', 'huge'), { body: { blob: 'x'.repeat(3000) }, base64: true }),
      413,
      'PayloadTooLarge',
    );
    assert.equal((await call(small, 'PUT', item('users', 'huge'), { body: { blob: 'x'.repeat(1000) } })).status, 200);
  });

  test('GET /health asks the nodes: a dead node shows as down in a container that sent it nothing else', async () => {
    const victim = await RedisServer.start();
    try {
      const healthOnly = createHttpApp(stack.cache({ CACHE_NODES: victim.url }), healthRoutes);
      assert.equal((await call(healthOnly, 'GET', '/health')).json.nodes[0].status, 'up');
      await victim.kill();
      assert.equal((await call(healthOnly, 'GET', '/health')).json.nodes[0].status, 'down');
    } finally {
      await victim.stop();
    }
  });

  test('anything unexpected is logged and answered 500 without details', async () => {
    const broken: Route = { method: 'GET', path: '/boom', handle: async () => Promise.reject(new TypeError('secret internals')) };
    const res = await call(createHttpApp(cache, [broken]), 'GET', '/boom');
    assertError(res, 500, 'InternalError');
    assert.ok(!res.text!.includes('secret'));
  });

  test('no input, however malformed, yields a 5xx', async () => {
    const nasty: [string, string, RequestOptions?][] = [
      ['PUT', item('users', 'n1'), { body: '['.repeat(100_000) + ']'.repeat(100_000) }],
      ['PUT', item('users', 'n1'), { body: `{"a": ${'['.repeat(100_000)}1${']'.repeat(100_000)}}` }],
      ['PUT', item('users', 'n1'), { body: `{"a": ${'{"b":'.repeat(40)}1${'}'.repeat(40)}}` }],
      ['PUT', item('users', 'n1'), { body: '{"a": 123456789012345678901234567890, "deep": ' + '['.repeat(5000) + ']'.repeat(5000) + '}' }],
      ['PUT', item('users', 'n1'), { body: { constructor: 'x' } }],
      ['PUT', item('users', 'n1'), { body: { m: { constructor: { name: 'Uint8Array' } } } }],
      ['PUT', item('users', 'n1'), { body: { m: { constructor: { name: 'Set' } } } }],
      ['PUT', item('users', 'n1'), { body: '{"__proto__": {"S": "x"}, "a": 1}' }],
      ['PUT', item('users', 'n1'), { body: '{"m": {"__proto__": {"polluted": true}}}' }],
      ['PUT', item('users', 'n1'), { body: { toString: 'x', valueOf: 1, hasOwnProperty: 2 } }],
      ['PUT', item('users', 'n1'), { body: { s: { $set: [1, 1] } } }],
      ['PUT', item('users', 'n1'), { body: '{"s": {"$set": [1, 1.0, 100000000000000000000000, 1e23]}}' }],
      ['PUT', item('users', 'n1'), { body: { s: { $set: [{ $base64: 'AA==' }, { $base64: 'AA==' }] } } }],
      ['PUT', item('users', 'n1'), { body: { s: { $set: [{ $base64: 'AA==' }, 'AA=='] } } }],
      ['PUT', item('users', 'n1'), { body: { userId: { $base64: 'AA==' } } }],
      ['PUT', item('users', 'n1'), { body: { ['x'.repeat(70_000)]: 1 } }],
      ['PUT', item('users', 'n1'), { body: { m: { ['é'.repeat(32_768)]: 1 } } }],
      ['PATCH', item('users', 'n1'), { body: { ['x'.repeat(65_536)]: 1 } }],
      ['PUT', item('users', 'n1'), { body: { e: '', l: [], m: {} } }],
      ['PUT', item('users', 'n1'), { body: '{"a": "\\ud800"}' }],
      ['PUT', item('orders', 'c', 'o'.repeat(1500)), { body: {} }],
      ['GET', item('orders', 'c', 'o'.repeat(1500))],
      ['GET', item('orders', 'c'.repeat(2048), 'o')],
      ['PATCH', item('users', 'n1'), { body: { ['a.b']: 1, ['#x']: 2, [':v']: 3 } }],
      ['PATCH', item('users', 'n1'), { body: {} }],
      ['POST', '/tables/users/batch-get', { body: { keys: [{ userId: 'a' }, { userId: 'a' }] } }],
      ['POST', '/tables/users/batch-get', { body: { keys: [{ userId: 'a', extra: 1 }] } }],
      ['POST', '/tables/users/batch-get', { body: { keys: ['a'] } }],
      ['POST', '/tables/users/batch-get', { body: { keys: [{ userId: '' }] } }],
      ['GET', `${item('readings', 'x')}?limit=99999999999999999999`],
      ['GET', `${item('readings', 'x')}?cursor=${Buffer.from('{"sensorId":"x","ts":"1"}').toString('base64url')}`],
      ['GET', `${item('readings', 'x')}?cursor=${Buffer.from('{"sensorId":"x"}').toString('base64url')}`],
      ['GET', `${item('readings', 'x')}?cursor=${Buffer.from('[]').toString('base64url')}`],
      ['GET', `${item('readings', 'x')}?cursor=${Buffer.from([0xff, 0xfe]).toString('base64url')}`],
      ['GET', '/tables/__proto__/items/x'],
      ['GET', '/tables/constructor/items/x'],
      ['GET', '/tables/toString/batch-get'],
      ['get', item('users', 'x')],
      ['', item('users', 'x')],
      ['GET', ''],
      ['GET', '//'],
      ['GET', '/tables/users/items/x/y/z'],
    ];
    for (const [method, path, opts] of nasty) {
      const res = await call(app, method, path, opts);
      const shown = typeof opts?.body === 'string' ? opts.body : JSON.stringify(opts?.body ?? '');
      assert.ok(
        res.status >= 200 && res.status < 500,
        `${method} ${path.slice(0, 80)} ${shown.slice(0, 80)} → ${res.status} ${res.text?.slice(0, 300)}`,
      );
    }
    // Events missing what API Gateway always sends must not crash the handler either.
    for (const ev of [
      {},
      { rawPath: '/health' },
      { requestContext: {} },
      { rawPath: item('users', 'x'), requestContext: { http: { method: 'PUT' } }, body: '{}' },
    ]) {
      const res = await app(ev as APIGatewayProxyEventV2);
      assert.ok((res.statusCode ?? 0) < 500, JSON.stringify(res));
    }
  });

  test('property: random methods, paths, headers and bodies never yield a 5xx', async () => {
    // Mostly well-formed requests with something off, so most of them reach the library and DynamoDB.
    const junk = fc.oneof(
      fc.constantFrom('', '%', '%2F', '%E0%A4%A', '%00', '..', 'batch-get', 'items', '__proto__'),
      fc.string({ maxLength: 6 }),
    );
    const keyText = fc.oneof(
      { weight: 4, arbitrary: fc.string({ minLength: 1, maxLength: 12 }) },
      {
        weight: 3,
        arbitrary: fc.oneof(fc.integer(), fc.double({ noNaN: true }), fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n })).map(String),
      },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b).toString('base64')) },
    );
    const segment = fc.oneof({ weight: 6, arbitrary: keyText.map(encodeURIComponent) }, { weight: 1, arbitrary: junk });
    const table = fc.constantFrom('users', 'orders', 'readings', 'blobs', 'users', 'readings', 'nosuch');
    const word = fc.string({ minLength: 1, maxLength: 12 });
    const numeric = fc
      .oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }))
      .map(String);
    const wellKeyed = fc.oneof(
      word.map((h) => ['users', h]),
      fc.tuple(word, word).map(([h, r]) => ['orders', h, r]),
      fc.tuple(word, numeric).map(([h, r]) => ['readings', h, r]),
      fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => ['blobs', Buffer.from(b).toString('base64')]),
      word.map((h) => ['readings', h]), // a partition
    );
    const path = fc.oneof(
      { weight: 8, arbitrary: wellKeyed.map(([t, ...k]) => `/tables/${t}/items/${k.map(encodeURIComponent).join('/')}`) },
      {
        weight: 3,
        arbitrary: fc.tuple(table, fc.array(segment, { minLength: 1, maxLength: 2 })).map(([t, k]) => `/tables/${t}/items/${k.join('/')}`),
      },
      { weight: 2, arbitrary: table.map((t) => `/tables/${t}/batch-get`) },
      { weight: 1, arbitrary: fc.array(junk, { maxLength: 5 }).map((s) => `/${s.join('/')}`) },
    );
    const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
      fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: arb });
    const query = sometimes(
      fc
        .tuple(
          fc.constantFrom('limit', 'cursor'),
          fc.oneof(
            fc.nat(200).map(String),
            fc.string({ maxLength: 10 }),
            fc.string({ maxLength: 30 }).map((v) => Buffer.from(v).toString('base64url')),
          ),
        )
        .map(([k, v]) => `?${k}=${encodeURIComponent(v)}`),
    ).map((q) => q ?? '');
    const tagged: fc.Arbitrary<unknown> = fc.oneof(
      fc.uint8Array({ maxLength: 6 }).map((b) => ({ $base64: Buffer.from(b).toString('base64') })),
      fc.array(fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.double()), { maxLength: 4 }).map((a) => ({ $set: a })),
      fc.jsonValue({ maxDepth: 1 }).map((v) => ({ $map: v })),
      fc.jsonValue({ maxDepth: 1 }).map((v) => ({ $base64: v })),
    );
    const attrName = fc.oneof(
      {
        weight: 1,
        arbitrary: fc.constantFrom('userId', 'customerId', 'orderId', 'sensorId', 'ts', 'id', '_version', 'constructor', '__proto__', ''),
      },
      { weight: 5, arbitrary: fc.string({ maxLength: 8 }) },
    );
    const lookupKey = fc.oneof(
      word.map((userId) => ({ userId })),
      fc.tuple(word, fc.oneof(fc.integer(), fc.double({ noNaN: true }))).map(([sensorId, ts]) => ({ sensorId, ts })),
      fc.tuple(word, word).map(([customerId, orderId]) => ({ customerId, orderId })),
      fc.dictionary(attrName, fc.oneof(keyText, fc.jsonValue({ maxDepth: 1 })), { maxKeys: 3 }),
    );
    const attrValue = fc.oneof({ weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) }, { weight: 1, arbitrary: tagged });
    // Raw text, so bodies can hold numbers no double can (JSON.stringify cannot write them).
    const bigNumber = fc.oneof(
      fc.bigInt({ min: -(10n ** 45n), max: 10n ** 45n }).map(String),
      fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 30n }), fc.integer({ min: -140, max: 140 })).map(([d, e]) => `${d}.5e${e}`),
    );
    const body = fc.option(
      fc.oneof(
        { weight: 6, arbitrary: fc.dictionary(attrName, attrValue, { maxKeys: 5 }).map((v) => JSON.stringify(v)) },
        {
          weight: 2,
          arbitrary: fc.tuple(attrName, bigNumber).map(([k, n]) => `{${JSON.stringify(k)}: ${n}, "list": [${n}, {"m": ${n}}]}`),
        },
        { weight: 2, arbitrary: fc.array(lookupKey, { maxLength: 4 }).map((keys) => JSON.stringify({ keys })) },
        { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) },
        { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
      ),
      { nil: undefined },
    );
    const headers = sometimes(
      fc.record({ 'If-Match': fc.oneof(fc.constantFrom('*', '"1"', '1', '"2"', 'W/"1"'), fc.string({ maxLength: 8 })) }),
    );
    const method = fc.constantFrom('GET', 'PUT', 'PATCH', 'DELETE', 'POST', 'GET', 'PUT', 'HEAD');
    const statuses = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(method, path, query, body, headers, sometimes(fc.constant(true)), async (m, p, q, b, h, b64) => {
        const res = await call(app, m, p + q, { body: b, headers: h, base64: b64 });
        assert.ok(res.status < 500, `${m} ${p}${q} ${b} → ${res.status} ${res.text}`);
        const k = `${m} ${res.status}`;
        statuses.set(k, (statuses.get(k) ?? 0) + 1);
      }),
      { numRuns: 500 },
    );
    // The run reached DynamoDB, not just the router.
    const reached = [...statuses].filter(([k]) => / (200|204|404|412)$/.test(k)).reduce((n, [, c]) => n + c, 0);
    assert.ok(reached > 100, JSON.stringify([...statuses]));
  });
});

describe('HTTP API when a dependency is down', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  test('503 with Retry-After when DynamoDB is unreachable', async () => {
    const port = await freePort(); // nothing listens there
    const cache = stack.cache({ DYNAMODB_ENDPOINT: `http://127.0.0.1:${port}`, DYNAMODB_MAX_ATTEMPTS: '1', DYNAMODB_TIMEOUT_MS: '200' });
    const app = createHttpApp(cache, allRoutes);
    const requests: [string, string, RequestOptions?][] = [
      ['GET', item('users', 'down')],
      ['GET', item('orders', 'c1')],
      ['POST', '/tables/users/batch-get', { body: { keys: [{ userId: 'a' }, { userId: 'b' }] } }],
      ['PUT', item('users', 'down'), { body: { a: 1 } }],
      ['PUT', item('users', 'down'), { body: { a: 1 }, headers: { 'If-Match': '*' } }],
      ['PATCH', item('users', 'down'), { body: { a: 1 } }],
      ['DELETE', item('users', 'down')],
    ];
    for (const [method, path, opts] of requests) {
      const res = await call(app, method, path, opts);
      assertError(res, 503, 'StoreUnavailable');
      assert.equal(res.headers['Retry-After'], '1', `${method} ${path}`);
      assert.ok(!res.text!.includes(String(port)), 'the endpoint is not disclosed');
    }
  });

  test('503 with Retry-After when the strict write policy cannot reach the cache node', async () => {
    const port = await freePort();
    const cache = stack.cache({ CACHE_NODES: `redis://127.0.0.1:${port}`, CACHE_WRITE_POLICY: 'strict' });
    const app = createHttpApp(cache, allRoutes);
    const res = await call(app, 'PUT', item('users', 'strict'), { body: { a: 1 } });
    assertError(res, 503, 'CacheUnavailable');
    assert.equal(res.headers['Retry-After'], '1');
    // Reads go around the unreachable node.
    const get = await call(app, 'GET', item('users', 'strict'));
    assertError(get, 404);
    assert.equal(get.headers['x-cache'], 'bypass');
  });

  test('a cache node that dies: reads bypass it (x-cache: bypass), /health says down, then starting, settling, then up', async () => {
    const cache = stack.cache({ CACHE_CHECK_INTERVAL_SECONDS: '1', CACHE_START_CYCLES: '1' });
    const app = createHttpApp(cache, allRoutes);
    const status = async (): Promise<string> => (await call(app, 'GET', '/health')).json.nodes[0].status;
    await call(app, 'PUT', item('users', 'dies'), { body: { v: 1 } });
    assert.equal((await call(app, 'GET', item('users', 'dies'))).headers['x-cache'], 'hit');
    assert.equal(await status(), 'up');
    const server = stack.servers[0]!;
    await server.kill();
    try {
      const get = await call(app, 'GET', item('users', 'dies'));
      assert.equal(get.status, 200);
      assert.equal(get.headers['x-cache'], 'bypass');
      assert.deepEqual(get.json, { userId: 'dies', v: 1 });
      assert.equal(await status(), 'down');
      // The available write policy commits and keeps the key dirty for the node's recovery.
      assert.equal((await call(app, 'PUT', item('users', 'dies'), { body: { v: 2 } })).status, 200);
    } finally {
      await server.restart({ keepData: false });
    }
    const seen: string[] = [];
    const deadline = Date.now() + 15_000;
    while (seen.at(-1) !== 'up' && Date.now() < deadline) {
      const s = await status();
      if (seen.at(-1) !== s) seen.push(s);
      await sleep(100);
    }
    // Restarted empty under a client that knew it: the new epoch settles (no fills) for the fence time.
    assert.deepEqual(seen, ['down', 'starting', 'settling', 'up']);
    const back = await call(app, 'GET', item('users', 'dies'));
    assert.deepEqual(back.json, { userId: 'dies', v: 2 });
    assert.notEqual(back.headers['x-cache'], 'bypass');
  });
});

describe('the Lambda entries', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 2 });
  });
  after(async () => {
    await sharedItemCache().close();
    await stack.stop();
  });

  test('read, write and health handlers share one module-scope ItemCache built from the environment', async () => {
    Object.assign(process.env, stack.env);
    const { handler: write } = await import('../../functions/http/write.ts');
    const { handler: read } = await import('../../functions/http/read.ts');
    const { handler: health } = await import('../../functions/http/health.ts');
    const put = await call(write, 'PUT', item('users', 'entry'), { body: '{"big": 12345678901234567890}' });
    assert.equal(put.status, 200, put.text);
    const get = await call(read, 'GET', item('users', 'entry'));
    assert.equal(get.headers['x-cache'], 'hit');
    assert.ok(get.text!.includes('12345678901234567890'));
    const h = await call(health, 'GET', '/health');
    assert.equal(h.json.nodes.length, 2);
    assert.equal((await call(read, 'PUT', item('users', 'entry'), { body: {} })).status, 405);
  });
});
