/**
 * Hardening: random methods, paths (random bytes, encodings, `..`, very long segments), headers and
 * bodies thrown at the handlers in-process. Never a 5xx, never an exception out of a handler, every
 * error in the JSON shape, and a rejected request changes nothing: DynamoDB exactly as before, and
 * the cache holds no entry it did not hold (a request DynamoDB refused may only drop entries, which
 * is always safe; one refused before any I/O leaves the cache byte for byte as it was).
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
        if ((await client.type(key)) === 'hash') redis.set(key, await client.hgetall(key));
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

  test('property: no 5xx, no escaping exception, JSON errors, and rejected requests change nothing', async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(method, path, query, body, headers, fc.boolean(), async (m, p, q, b, h, b64) => {
        const before = await snapshot();
        let res;
        try {
          res = await call(app, m, p + q, { body: b, headers: h, base64: b64 && b !== undefined });
        } catch (err) {
          assert.fail(`the handler threw on ${m} ${p}${q}: ${String(err)}`);
        }
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `${m} ${p}${q} ${b} → ${res.status} ${res.text}`);
        if (res.status < 400) return;
        assert.equal(typeof res.json?.error?.code, 'string', `error shape: ${res.text}`);
        assert.equal(typeof res.json?.error?.message, 'string', `error shape: ${res.text}`);
        const after = await snapshot();
        assert.equal(after.dynamo, before.dynamo, `${m} ${p} → ${res.status} changed DynamoDB`);
        // A GET that answered "not found" may cache that answer (R8): not a rejection.
        if (m === 'GET' && res.status === 404 && res.json.error.code === 'ItemNotFound') return;
        for (const [key, fields] of after.redis) {
          const was = before.redis.get(key);
          if (fields.d !== undefined) assert.equal(fields.d, was?.d, `${m} ${p} → ${res.status} stored an entry at ${key}`);
        }
        if (res.status === 400 || res.status === 405 || (res.status === 404 && res.json.error.code !== 'ItemNotFound')) {
          assert.deepEqual(after.redis, before.redis, `${m} ${p} → ${res.status} touched the cache before rejecting`);
        }
      }),
      { numRuns: 300 },
    );
    assert.ok((seen.get(400) ?? 0) > 20, JSON.stringify([...seen]));
  });
});
