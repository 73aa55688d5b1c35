/**
 * The drop-in client (lib/drop-in/client.ts) beyond the differential test: where a consistent read
 * is served from, the version attribute hidden and refused, what is refused as unsupported, the
 * library and the drop-in sharing one cache, and races R1–R3 with the drop-in as the writer and
 * as the reader (one container held at a seam of the protocol while another runs).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import {
  defineTable,
  invalidateStreamRecords,
  UnsupportedCommandError,
  ValidationError,
  withCache,
  type ItemCache,
  type ReadResult,
} from '../../lib/index.ts';
import { streamRecord } from '../helpers/faults.ts';
import type { ProtocolHooks } from '../../lib/cache/protocol.ts';
import { Gate, startStack, type TestStack } from '../helpers/stack.ts';

const STRICT_ONLY = defineTable({ name: 'ledger', hashKey: { name: 'id', type: 'S' }, allWritesThroughStrictCache: true });
const ORDERS = defineTable({ name: 'orders', hashKey: { name: 'customerId', type: 'S' }, rangeKey: { name: 'orderId', type: 'S' } });
const UNCACHED = defineTable({ name: 'audit', hashKey: { name: 'id', type: 'S' }, cached: false });

type Obj = Record<string, any>;

/**
 * Counts where a cache's single-key reads were served from: at readAs, which get() and the drop-in's
 * GetCommand both go through.
 */
function counted(cache: ItemCache): Map<string, number> {
  const sources = new Map<string, number>();
  const readAs = cache.readAs.bind(cache) as (...args: unknown[]) => Promise<unknown>;
  cache.readAs = ((rk: unknown, context: unknown, answer: (r: ReadResult, c: unknown) => unknown, recover?: unknown) =>
    readAs(
      rk,
      context,
      (r: ReadResult, c: unknown) => {
        sources.set(r.cache, (sources.get(r.cache) ?? 0) + 1);
        return answer(r, c);
      },
      recover,
    )) as ItemCache['readAs'];
  return sources;
}

/** Hooks that hold the first client reaching `point` for `key` at a gate, once. */
function holdOnce(point: 'beforeFill' | 'beforeCommit' | 'afterCommit', redisKey: string, gate: Gate): ProtocolHooks {
  let used = false;
  return {
    [point]: async (k: string) => {
      if (k !== redisKey || used) return;
      used = true;
      await gate.hold();
    },
  };
}

describe('drop-in client', () => {
  let stack: TestStack;
  let plain: DynamoDBDocumentClient;
  const name = (table: string) => `${stack.prefix}${table}`;
  before(async () => {
    stack = await startStack({ tables: [STRICT_ONLY, ORDERS, UNCACHED] });
    plain = DynamoDBDocumentClient.from(stack.dynamo);
  });
  after(async () => stack.stop());

  test('a consistent read is served from the cache only for a table declared all-strict, by an instance under strict', async () => {
    const cases: [string, Record<string, string>, boolean][] = [
      ['ledger', { CACHE_WRITE_POLICY: 'strict' }, true],
      ['ledger', { CACHE_WRITE_POLICY: 'available' }, false],
      ['orders', { CACHE_WRITE_POLICY: 'strict' }, false],
    ];
    for (const [table, overrides, fromCache] of cases) {
      const cache = stack.cache(overrides);
      const sources = counted(cache);
      const client = withCache(plain, { cache });
      const key = table === 'ledger' ? { id: `c-${overrides.CACHE_WRITE_POLICY}` } : { customerId: 'c', orderId: 'consistent' };
      await client.send(new PutCommand({ TableName: name(table), Item: { ...key, v: 1 } }));
      for (let i = 0; i < 3; i++) {
        const got = await client.send(new GetCommand({ TableName: name(table), Key: key, ConsistentRead: true }));
        assert.deepEqual(got.Item, { ...key, v: 1 });
      }
      // The first read of a shape is DynamoDB's; then the cache's, when allowed.
      assert.equal(sources.get('hit') ?? 0, fromCache ? 2 : 0, `${table} ${JSON.stringify(overrides)}`);
      // An eventually consistent read is the cache's in every case.
      await client.send(new GetCommand({ TableName: name(table), Key: key }));
      assert.ok((sources.get('hit') ?? 0) >= 1, `${table}: a plain read hits`);
    }
  });

  test('the version attribute: in no answer, and refused where a request names it', async () => {
    const cache = stack.cache();
    const client = withCache(plain, { cache });
    const key = { customerId: 'v', orderId: '1' };
    const put = await client.send(new PutCommand({ TableName: name('orders'), Item: { ...key, n: 1 }, ReturnValues: 'ALL_OLD' }));
    assert.equal(put.Attributes, undefined);
    const updated = await client.send(
      new UpdateCommand({
        TableName: name('orders'),
        Key: key,
        UpdateExpression: 'ADD n :one',
        ExpressionAttributeValues: { ':one': 1 },
        ReturnValues: 'UPDATED_NEW',
      }),
    );
    assert.deepEqual(updated.Attributes, { n: 2 });
    // DynamoDB holds it, and the library reads it as the item's version: 2 writes.
    assert.equal((await cache.get('orders', key)).version, 2);
    for (const command of [
      new QueryCommand({ TableName: name('orders'), KeyConditionExpression: 'customerId = :c', ExpressionAttributeValues: { ':c': 'v' } }),
      new ScanCommand({ TableName: name('orders'), FilterExpression: 'customerId = :c', ExpressionAttributeValues: { ':c': 'v' } }),
    ]) {
      const out = (await client.send(command as QueryCommand)) as Obj;
      assert.deepEqual(out.Items, [{ ...key, n: 2 }]);
    }
    const refused: [object, RegExp][] = [
      [new GetCommand({ TableName: name('orders'), Key: key, ProjectionExpression: '_version' }), /ProjectionExpression.*_version/],
      [
        new GetCommand({ TableName: name('orders'), Key: key, ProjectionExpression: '#v', ExpressionAttributeNames: { '#v': '_version' } }),
        /#v/,
      ],
      [new PutCommand({ TableName: name('orders'), Item: { ...key, _version: 9 } }), /Item\._version/],
      [
        new UpdateCommand({
          TableName: name('orders'),
          Key: key,
          UpdateExpression: 'SET #v = :x',
          ExpressionAttributeNames: { '#v': '_version' },
          ExpressionAttributeValues: { ':x': 1 },
        }),
        /#v/,
      ],
    ];
    for (const [command, message] of refused) {
      await assert.rejects(client.send(command as GetCommand), (e: unknown) => e instanceof ValidationError && message.test(e.message));
    }
    assert.equal((await cache.get('orders', key)).version, 2, 'nothing was written');
  });

  test('what would write around the cache is refused; uncached and unknown tables pass through', async () => {
    const client = withCache(plain, { cache: stack.cache() });
    const refused = [
      new BatchWriteCommand({ RequestItems: { [name('orders')]: [{ PutRequest: { Item: { customerId: 'x', orderId: 'y' } } }] } }),
      new PutItemCommand({ TableName: name('orders'), Item: { customerId: { S: 'x' }, orderId: { S: 'y' } } }),
      new PutCommand({ TableName: name('orders'), Item: { customerId: 'x', orderId: 'y' }, Expected: { n: { Exists: false } } }),
    ];
    for (const command of refused) {
      await assert.rejects(client.send(command as PutCommand), UnsupportedCommandError, command.constructor.name);
    }
    const scan = await plain.send(
      new ScanCommand({ TableName: name('orders'), FilterExpression: 'customerId = :x', ExpressionAttributeValues: { ':x': 'x' } }),
    );
    assert.deepEqual(scan.Items, [], 'nothing was written');
    // A table the cache does not cache: the command reaches DynamoDB as it was sent, no version added.
    await client.send(new BatchWriteCommand({ RequestItems: { [name('audit')]: [{ PutRequest: { Item: { id: 'a1' } } }] } }));
    await client.send(new PutCommand({ TableName: name('audit'), Item: { id: 'a2' } }));
    const audit = await plain.send(new ScanCommand({ TableName: name('audit'), ConsistentRead: true }));
    assert.deepEqual(audit.Items?.map((i) => i.id).sort(), ['a1', 'a2']);
    assert.ok(audit.Items?.every((i) => !('_version' in i)));
  });

  test('the drop-in and the library share one cache: each sees the other’s writes, versions counting both', async () => {
    const cache = stack.cache();
    const client = withCache(plain, { cache });
    const key = { customerId: 'shared', orderId: '1' };
    await client.send(new PutCommand({ TableName: name('orders'), Item: { ...key, by: 'drop-in' } }));
    assert.deepEqual(await cache.get('orders', key), { item: { ...key, by: 'drop-in' }, version: 1, cache: 'hit' });
    await cache.update('orders', key, { set: { by: 'library' } });
    assert.deepEqual((await client.send(new GetCommand({ TableName: name('orders'), Key: key }))).Item, { ...key, by: 'library' });
    await client.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Update: {
              TableName: name('orders'),
              Key: key,
              UpdateExpression: 'SET #b = :b',
              ExpressionAttributeNames: { '#b': 'by' },
              ExpressionAttributeValues: { ':b': 'transaction' },
            },
          },
          { Put: { TableName: name('orders'), Item: { customerId: 'shared', orderId: '2', by: 'transaction' } } },
        ],
      }),
    );
    const [one, two] = await Promise.all([cache.get('orders', key), cache.get('orders', { customerId: 'shared', orderId: '2' })]);
    assert.deepEqual([one.item?.by, one.version], ['transaction', 3]);
    assert.deepEqual([two.item?.by, two.version], ['transaction', 1]);
  });

  test('G2 through the drop-in: a write made around it is read once its stream record is applied', async () => {
    const cache = stack.cache();
    const client = withCache(plain, { cache });
    const key = { customerId: 'g2', orderId: '1' };
    await client.send(new PutCommand({ TableName: name('orders'), Item: { ...key, v: 'through' } }));
    await client.send(new GetCommand({ TableName: name('orders'), Key: key })); // the shape met once
    assert.equal((await client.send(new GetCommand({ TableName: name('orders'), Key: key }))).Item?.v, 'through');
    await plain.send(new PutCommand({ TableName: name('orders'), Item: { ...key, v: 'around' } })); // out of band
    assert.equal((await client.send(new GetCommand({ TableName: name('orders'), Key: key }))).Item?.v, 'through', 'until the stream');
    const consumer = stack.cache();
    const result = await invalidateStreamRecords(consumer, [streamRecord(consumer, consumer.resolve('orders', key), '100')]);
    assert.deepEqual(result.batchItemFailures, []);
    assert.equal((await client.send(new GetCommand({ TableName: name('orders'), Key: key }))).Item?.v, 'around');
  });

  test('R1 through the drop-in: a reader that read the old item cannot store it after a drop-in write returned', async () => {
    const writerCache = stack.cache();
    const writer = withCache(plain, { cache: writerCache });
    const key = { customerId: 'r1', orderId: '1' };
    await writer.send(new PutCommand({ TableName: name('orders'), Item: { ...key, v: 'old' } }));
    const rk = writerCache.resolve('orders', key);
    await writerCache.nodeFor(rk)!.client.del(rk.redisKey); // start from a miss
    const gate = new Gate();
    const readerCache = stack.cache({}, { hooks: holdOnce('beforeFill', rk.redisKey, gate) });
    const reader = withCache(plain, { cache: readerCache });
    await reader.send(new GetCommand({ TableName: name('orders'), Key: { customerId: 'r1', orderId: 'other' } })); // its shape met once
    const slow = reader.send(new GetCommand({ TableName: name('orders'), Key: key }));
    await gate.reached; // read 'old' from DynamoDB, stalled before its fill
    await writer.send(
      new UpdateCommand({
        TableName: name('orders'),
        Key: key,
        UpdateExpression: 'SET v = :v',
        ExpressionAttributeValues: { ':v': 'new' },
      }),
    );
    gate.open();
    assert.equal((await slow).Item?.v, 'old'); // concurrent with the write: either answer is allowed
    const later = withCache(plain, { cache: stack.cache() });
    await later.send(new GetCommand({ TableName: name('orders'), Key: { customerId: 'r1', orderId: 'other' } }));
    assert.equal((await later.send(new GetCommand({ TableName: name('orders'), Key: key }))).Item?.v, 'new');
  });

  test('R3 through the drop-in: two writers whose cache updates land out of order never leave the older item trusted', async () => {
    const key = { customerId: 'r3', orderId: '1' };
    const first = stack.cache();
    const rk = first.resolve('orders', key);
    const gate = new Gate();
    const slowCache = stack.cache({}, { hooks: holdOnce('afterCommit', rk.redisKey, gate) });
    const slow = withCache(plain, { cache: slowCache });
    const fast = withCache(plain, { cache: first });
    const pending = slow.send(new PutCommand({ TableName: name('orders'), Item: { ...key, v: 'first' } }));
    await gate.reached; // committed in DynamoDB, its cache update not yet made
    await fast.send(new PutCommand({ TableName: name('orders'), Item: { ...key, v: 'second' } }));
    gate.open();
    await pending;
    const reader = stack.cache();
    const got = await reader.get('orders', key);
    assert.equal(got.item?.v, 'second');
    assert.equal(got.version, 2);
  });
});
