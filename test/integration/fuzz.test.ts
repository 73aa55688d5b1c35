/**
 * Hardening: random methods, paths (random bytes, encodings, `..`, very long segments), headers and
 * bodies thrown at the handlers in-process. Never a 5xx, never an exception out of a handler, every
 * error in the JSON shape, and a rejected request changes nothing: DynamoDB exactly as before, and
 * the cache holds no entry it did not hold (a request DynamoDB refused may only drop entries, which
 * is always safe; one refused before any I/O leaves the cache byte for byte as it was). A second
 * property throws issue 18's hostile bodies at the write and batch-get routes: pathological numbers
 * (long digit runs, `1000…0001`, huge and zero-padded exponents, many leading zeros, spellings
 * around MAX_NUMBER_LENGTH), ill-formed UTF-16 (lone surrogates: only the answer's class is asserted
 * there for now), nesting up to 200,000 levels, batches of more than 100 keys and bodies just under
 * and over the size limit.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { call } from '../helpers/api-event.ts';
import { createHttpApp, type HttpHandler } from '../../functions/http/app.ts';
import { allRoutes } from '../../functions/http/routes.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { MAX_NUMBER_LENGTH } from '../../lib/numbers.ts';

type Snapshot = { dynamo: string; redis: Map<string, Record<string, string>> };

describe('fuzzed HTTP API', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let app: HttpHandler;
  let admins: Redis[];
  before(async () => {
    stack = await startStack({ shards: 2 });
    admins = stack.servers.map((s) => s.client());
    cache = stack.cache();
    app = createHttpApp(cache, allRoutes);
    // Some data for the requests to run into.
    for (let i = 0; i < 5; i++) {
      await cache.put('users', { userId: `u${i}`, n: i });
      await cache.put('orders', { customerId: 'c', orderId: `o${i}`, n: i });
      await cache.put('readings', { sensorId: 's', ts: i, n: i });
    }
  });
  after(async () => {
    await Promise.all(admins.map((c) => c.quit()));
    await stack.stop();
  });

  async function snapshot(): Promise<Snapshot> {
    const tables = await Promise.all(
      stack.tables.map(async (t) => {
        const out = await stack.dynamo.send(new ScanCommand({ TableName: stack.prefix + t.name, ConsistentRead: true }));
        return (out.Items ?? []).map((i) => JSON.stringify(i, Object.keys(i).sort())).sort();
      }),
    );
    // Through clients of the test's own, without the cache's tight command timeout.
    const redis = new Map<string, Record<string, string>>();
    for (const client of admins) {
      for (const key of await client.keys('*')) {
        // The entries (what reads return: d, v); a write DynamoDB refuses puts its entry back but
        // leaves a new write stamp (w), as any begin does (ARCHITECTURE.md, "How a write travels").
        if ((await client.type(key)) === 'hash') {
          const [d, v] = await client.hmget(key, 'd', 'v');
          if (d !== null && d !== undefined) redis.set(key, { d, v: v ?? '' });
        }
      }
    }
    return { dynamo: JSON.stringify(tables), redis };
  }

  const segment = fc.oneof(
    fc.string({ maxLength: 10 }).map(encodeURIComponent),
    fc.uint8Array({ maxLength: 12 }).map((b) => [...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('')),
    fc.constantFrom(
      '..',
      '.',
      '',
      '%',
      '%zz',
      '%2e%2e',
      'items',
      'tables',
      'batch-get',
      'users',
      'readings',
      'orders',
      'u1',
      '1',
      '-0',
      '1e400',
      'NaN',
    ),
    fc.integer({ min: 1000, max: 5000 }).map((n) => 'x'.repeat(n)),
  );
  const path = fc.oneof(
    fc.array(segment, { maxLength: 6 }).map((s) => `/${s.join('/')}`),
    fc
      .tuple(fc.constantFrom('users', 'orders', 'readings', 'nope'), fc.array(segment, { minLength: 1, maxLength: 3 }))
      .map(([t, k]) => `/tables/${t}/items/${k.join('/')}`),
    fc.constantFrom(
      '/tables/users/batch-get',
      '/tables/readings/batch-get',
      '/health',
      '/tables/users/items/u1',
      '/tables/readings/items/s/1',
    ),
  );
  const query = fc.option(
    fc
      .array(fc.tuple(fc.constantFrom('limit', 'cursor', 'x'), fc.string({ maxLength: 12 })), { maxLength: 3 })
      .map((kv) => `?${kv.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}`),
    { nil: '' },
  );
  const hostileJson = fc.constantFrom(
    '{"userId":"other"}',
    '{"_version":5}',
    '{"n":1e400}',
    '{"n":NaN}',
    '{"n":123456789012345678901234567890123456789012}',
    '{"s":{"$set":[]}}',
    '{"b":{"$base64":"!!"}}',
    '{"__proto__":{"x":1}}',
    '{"keys":[{"userId":1}]}',
    `{"keys":[${Array.from({ length: 101 }, (_, i) => `{"userId":"k${i}"}`).join(',')}]}`,
    '{"keys":[{"sensorId":"s"}]}',
    '[]',
    '"text"',
    'null',
    '{',
    '',
  );
  const body = fc.option(
    fc.oneof(
      hostileJson,
      fc.json({ maxDepth: 3 }),
      fc.string({ maxLength: 40 }),
      fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b).toString('latin1')),
    ),
    { nil: undefined },
  );
  const headers = fc.option(
    fc.record({ 'If-Match': fc.oneof(fc.constantFrom('*', '"1"', '"99"', 'W/"1"', '"x"', ''), fc.string({ maxLength: 6 })) }),
    { nil: undefined },
  );
  const method = fc.constantFrom('GET', 'PUT', 'PATCH', 'DELETE', 'POST', 'HEAD', 'OPTIONS', 'TRACE');

  /**
   * One request and the properties every answer has: never a 5xx or an exception; errors in the
   * JSON shape; a rejected request changes nothing. Returns the status.
   */
  async function checkRequest(
    m: string,
    p: string,
    b: string | undefined,
    h: Record<string, string> | undefined,
    b64: boolean,
  ): Promise<number> {
    const before = await snapshot();
    let res;
    try {
      res = await call(app, m, p, { body: b, headers: h, base64: b64 && b !== undefined });
    } catch (err) {
      assert.fail(`the handler threw on ${m} ${p}: ${String(err)}`);
    }
    assert.ok(res.status < 500, `${m} ${p} ${b?.slice(0, 200)} → ${res.status} ${res.text}`);
    if (res.status < 400) return res.status;
    assert.equal(typeof res.json?.error?.code, 'string', `error shape: ${res.text}`);
    assert.equal(typeof res.json?.error?.message, 'string', `error shape: ${res.text}`);
    const after = await snapshot();
    assert.equal(after.dynamo, before.dynamo, `${m} ${p} → ${res.status} changed DynamoDB`);
    // A GET that answered "not found" may cache that answer (R8): not a rejection.
    if (m === 'GET' && res.status === 404 && res.json.error.code === 'ItemNotFound') return res.status;
    for (const [key, fields] of after.redis) {
      const was = before.redis.get(key);
      if (fields.d !== undefined) assert.equal(fields.d, was?.d, `${m} ${p} → ${res.status} stored an entry at ${key}`);
    }
    if (res.status === 400 || res.status === 405 || (res.status === 404 && res.json.error.code !== 'ItemNotFound')) {
      assert.deepEqual(after.redis, before.redis, `${m} ${p} → ${res.status} touched the cache before rejecting`);
    }
    return res.status;
  }

  test('property: no 5xx, no escaping exception, JSON errors, and rejected requests change nothing', async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(method, path, query, body, headers, fc.boolean(), async (m, p, q, b, h, b64) => {
        const status = await checkRequest(m, p + q, b, h, b64);
        seen.set(status, (seen.get(status) ?? 0) + 1);
      }),
      { numRuns: 300 },
    );
    assert.ok((seen.get(400) ?? 0) > 20, JSON.stringify([...seen]));
  });

  // Issue 18: pathological numbers, ill-formed UTF-16, deep nesting and oversized batches. Every
  // answer is a clear 4xx or a success; a hang fails the test by its timeout.
  const digitRun = (max: number) => fc.integer({ min: 1, max });
  const pathologicalNumber = fc.oneof(
    digitRun(200_000).map((n) => `1${'0'.repeat(n)}1`), // the quadratic case of finding 1
    digitRun(100_000).map((n) => '9'.repeat(n)),
    digitRun(100_000).map((n) => `-0.${'0'.repeat(n)}1`), // leading zeros (JSON allows them only after the point)
    fc.tuple(fc.constantFrom('1e', '1E+', '-1.5e-', '0e', '0.0e-'), digitRun(50_000)).map(([mantissa, n]) => `${mantissa}${'9'.repeat(n)}`), // huge exponents
    fc.integer({ min: 0, max: 400 }).map((n) => `1e-${'0'.repeat(n)}130`), // zero-padded exponents
    fc.integer({ min: MAX_NUMBER_LENGTH - 2, max: MAX_NUMBER_LENGTH + 2 }).map((n) => `1.${'0'.repeat(n - 2)}`), // around the bound, valid
    fc.integer({ min: MAX_NUMBER_LENGTH - 2, max: MAX_NUMBER_LENGTH + 2 }).map((n) => `1${'0'.repeat(n - 2)}1`),
    fc.constantFrom(`-0.${'0'.repeat(129)}12345678901234567890123456789012345678`, '9.9999999999999999999999999999999999999e125'),
  );
  /** JSON string literals that are not well-formed UTF-16: lone surrogates, raw or escaped. */
  const illFormedString = fc
    .tuple(
      fc.constantFrom('\\ud800', '\\udc00', '\\udfff\\ud800', '\ud806', '\udc00', 'x\ud800y'),
      fc.string({ maxLength: 4 }).map((t) => JSON.stringify(t).slice(1, -1)),
    )
    .map(([bad, ok]) => `"${ok}${bad}"`);
  const deeplyNested = fc
    .tuple(
      fc.integer({ min: 30, max: 200_000 }),
      fc.constantFrom('[', '{"a":', '{"$map":{"a":', '{"L":['),
      fc.constantFrom('1', '1.5', '"x"', '[]'),
    )
    .map(([depth, open, inner]) => {
      const close = open === '[' ? ']' : open === '{"a":' ? '}' : open === '{"L":[' ? ']}' : '}}';
      const levels = Math.min(depth, Math.floor(200_000 / open.length));
      return `${open.repeat(levels)}${inner}${close.repeat(levels)}`;
    });
  const hostileValue = fc.oneof(pathologicalNumber, illFormedString, deeplyNested);
  type Hostile = { method: string; path: string; body: string | undefined; illFormed: boolean };
  const hostileRequest: fc.Arbitrary<Hostile> = fc.oneof(
    fc
      .tuple(fc.constantFrom('PUT', 'PATCH'), fc.constantFrom('/tables/users/items/u1', '/tables/readings/items/s/1'), hostileValue)
      .chain(([method, path, v]) =>
        fc
          .constantFrom(
            `{"n":${v}}`,
            `{"l":[1,${v}]}`,
            `{"s":{"$set":[${v}]}}`,
            `{"m":{"$map":{"x":${v}}}}`,
            `{${v.startsWith('"') ? v : '"k"'}:1}`,
          )
          .map((body) => ({ method, path, body, illFormed: v.startsWith('"') })),
      ),
    hostileValue.chain((v) =>
      fc
        .constantFrom(
          { path: '/tables/readings/batch-get', body: `{"keys":[{"sensorId":"s","ts":${v}}]}` },
          { path: '/tables/users/batch-get', body: `{"keys":[{"userId":${v}}]}` },
          { path: '/tables/users/batch-get', body: `{"keys":[{"userId":"u1"}],"other":${v}}` },
        )
        .map((r) => ({ method: 'POST', ...r, illFormed: v.startsWith('"') })),
    ),
    pathologicalNumber.map((n) => ({ method: 'GET', path: `/tables/readings/items/s/${n}`, body: undefined, illFormed: false })),
    // More keys than a batch-get takes, each as hostile as a key can be.
    fc.tuple(fc.integer({ min: 101, max: 2000 }), fc.constantFrom('"k"', '1e999', '"\\ud800"')).map(([n, v]) => ({
      method: 'POST',
      path: '/tables/users/batch-get',
      body: `{"keys":[${Array.from({ length: n }, () => `{"userId":${v}}`).join(',')}]}`,
      illFormed: v.includes('ud800'),
    })),
    // Bodies just under and just over the size limit.
    fc.tuple(fc.integer({ min: -64, max: 64 }), fc.constantFrom('batch', 'put')).map(([d, kind]) => {
      const size = cache.config.http.maxBodyBytes + d;
      const body = kind === 'batch' ? `{"keys":[{"userId":"${'x'.repeat(size - 23)}"}]}` : `{"l":[${'1,'.repeat((size - 9) >> 1)}1]}`;
      return {
        method: kind === 'batch' ? 'POST' : 'PUT',
        path: kind === 'batch' ? '/tables/users/batch-get' : '/tables/users/items/big',
        body,
        illFormed: false,
      };
    }),
  );

  test('property: pathological numbers, ill-formed UTF-16, deep nesting and oversized batches get a 4xx or a success', {
    timeout: 15 * 60_000,
  }, async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(hostileRequest, async (r) => {
        if (r.illFormed) {
          // Keys and attribute names are made to refuse these elsewhere (issue 18, finding 2):
          // for now only the class of the answer is asserted.
          const res = await call(app, r.method, r.path, { body: r.body });
          assert.ok(res.status < 500, `${r.method} ${r.path} ${r.body?.slice(0, 200)} → ${res.status} ${res.text}`);
          seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
          return;
        }
        const status = await checkRequest(r.method, r.path, r.body, undefined, false);
        seen.set(status, (seen.get(status) ?? 0) + 1);
      }),
      { numRuns: 100 },
    );
    assert.ok((seen.get(400) ?? 0) > 20, JSON.stringify([...seen]));
  });
});
