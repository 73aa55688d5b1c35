import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DeleteItemCommand, PutItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { setTimeout as sleep } from 'node:timers/promises';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { batch, streamRecord } from '../helpers/stream-records.ts';
import { defineTable, exampleTables, sharedItemCache, type ItemCache } from '../../lib/index.ts';
import { createStreamHandler, type StreamHandler } from '../../functions/stream.ts';

describe('the Streams consumer', () => {
  let stack: TestStack;
  let writer: ItemCache;
  let consumer: ItemCache;
  let handler: StreamHandler;
  before(async () => {
    stack = await startStack({ shards: 3, tables: [...exampleTables, defineTable({ name: 'blobs', hashKey: { name: 'id', type: 'B' } })] });
    writer = stack.cache();
    consumer = stack.cache();
    handler = createStreamHandler(consumer);
  });
  after(async () => stack.stop());

  /** A write that bypasses the cache, as another writer (or the console) would make: only the stream tells the cache. */
  async function writeAround(table: string, item: Record<string, { S: string } | { N: string }>): Promise<void> {
    await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}${table}`, Item: item }));
  }

  test('KEYS_ONLY: a record invalidates the entry of its item; the next read fills the new value', async () => {
    await writer.put('users', { userId: 'k1', v: 'old' });
    assert.equal((await writer.get('users', { userId: 'k1' })).cache, 'hit');
    await writeAround('users', { userId: { S: 'k1' }, v: { S: 'new' }, _version: { N: '2' } });
    assert.equal((await writer.get('users', { userId: 'k1' })).item?.v, 'old', 'the cache cannot know yet');
    const res = await handler(batch(streamRecord(stack, 'users', { userId: { S: 'k1' } }, '100')));
    assert.deepEqual(res, { batchItemFailures: [] });
    const after = await writer.get('users', { userId: 'k1' });
    assert.equal(after.cache, 'miss');
    assert.equal(after.item?.v, 'new');
  });

  test('NEW_AND_OLD_IMAGES: the keys are what counts; numeric range keys work', async () => {
    const key = { sensorId: 's1', ts: 1700000000000 };
    await writer.put('readings', { ...key, c: 20 });
    await stack.dynamo.send(
      new UpdateItemCommand({
        TableName: `${stack.prefix}readings`,
        Key: { sensorId: { S: 's1' }, ts: { N: '1700000000000' } },
        UpdateExpression: 'SET c = :c ADD #v :one',
        ExpressionAttributeNames: { '#v': '_version' },
        ExpressionAttributeValues: { ':c': { N: '21' }, ':one': { N: '1' } },
      }),
    );
    const keys = { sensorId: { S: 's1' }, ts: { N: '1700000000000' } };
    const res = await handler(
      batch(
        streamRecord(stack, 'readings', keys, '200', 'NEW_AND_OLD_IMAGES', {
          OldImage: { ...keys, c: { N: '20' }, _version: { N: '1' } },
          NewImage: { ...keys, c: { N: '21' }, _version: { N: '2' } },
        }),
      ),
    );
    assert.deepEqual(res.batchItemFailures, []);
    const r = await writer.get('readings', key);
    assert.equal(r.cache, 'miss');
    assert.equal(r.item?.c, 21);
    assert.equal(r.version, 2);
  });

  test('binary keys arrive base64-encoded, as Lambda delivers them', async () => {
    const id = Uint8Array.from([0, 255, 16, 32]);
    await writer.put('blobs', { id, v: 'old' });
    await stack.dynamo.send(
      new PutItemCommand({ TableName: `${stack.prefix}blobs`, Item: { id: { B: id }, v: { S: 'new' }, _version: { N: '2' } } }),
    );
    assert.equal((await writer.get('blobs', { id })).item?.v, 'old');
    const res = await handler(batch(streamRecord(stack, 'blobs', { id: { B: Buffer.from(id).toString('base64') } }, '250')));
    assert.deepEqual(res.batchItemFailures, []);
    assert.equal((await writer.get('blobs', { id })).item?.v, 'new');
  });

  test('a REMOVE record invalidates too: the deleted item reads as missing', async () => {
    await writer.put('orders', { customerId: 'c1', orderId: 'o1', total: 5 });
    const keys = { customerId: { S: 'c1' }, orderId: { S: 'o1' } };
    await stack.dynamo.send(new DeleteItemCommand({ TableName: `${stack.prefix}orders`, Key: keys }));
    assert.equal((await writer.get('orders', { customerId: 'c1', orderId: 'o1' })).item?.total, 5, 'the cache cannot know yet');
    const rec = { ...streamRecord(stack, 'orders', keys, '300'), eventName: 'REMOVE' as const };
    assert.deepEqual((await handler(batch(rec))).batchItemFailures, []);
    assert.equal((await writer.get('orders', { customerId: 'c1', orderId: 'o1' })).item, undefined);
  });

  test('records that can never apply (another table, malformed keys) are skipped, not reported', async () => {
    await writer.put('users', { userId: 'k2', v: 'old' });
    await writeAround('users', { userId: { S: 'k2' }, v: { S: 'new' }, _version: { N: '2' } });
    const foreign = streamRecord(stack, 'users', { userId: { S: 'k2' } }, '401');
    foreign.eventSourceARN = 'arn:aws:dynamodb:us-east-1:000000000000:table/someone-elses-table/stream/2026-01-01T00:00:00.000';
    const noArn = streamRecord(stack, 'users', { userId: { S: 'k2' } }, '402');
    delete noArn.eventSourceARN;
    const wrongKey = streamRecord(stack, 'users', { id: { S: 'k2' } }, '403');
    const wrongType = streamRecord(stack, 'readings', { sensorId: { S: 's' }, ts: { S: 'noon' } }, '404');
    const noKeys = streamRecord(stack, 'users', { userId: { S: 'k2' } }, '405');
    delete noKeys.dynamodb!.Keys;
    const good = streamRecord(stack, 'users', { userId: { S: 'k2' } }, '406');
    const res = await handler(batch(foreign, noArn, wrongKey, wrongType, noKeys, good));
    assert.deepEqual(res.batchItemFailures, []);
    assert.equal((await writer.get('users', { userId: 'k2' })).item?.v, 'new', 'the good record in the same batch applied');
    assert.deepEqual(await handler(batch()), { batchItemFailures: [] });
  });

  test('a node that cannot be reached: its records are reported by sequence number, the others apply; the retry succeeds', async () => {
    // Two items on different nodes.
    const found = stack.usersOnDistinctServers(consumer, 'node');
    const keys = found.map((f) => f.key);
    const [onDead, onLive] = keys as [{ userId: string }, { userId: string }];
    const dead = (found[0] as (typeof found)[number]).server;
    for (const k of keys) {
      await writer.put('users', { ...k, v: 'old' });
      await writeAround('users', { userId: { S: k.userId }, v: { S: 'new' }, _version: { N: '2' } });
    }
    const event = batch(
      streamRecord(stack, 'users', { userId: { S: onLive.userId } }, '500'),
      streamRecord(stack, 'users', { userId: { S: onDead.userId } }, '501'),
      streamRecord(stack, 'users', { userId: { S: onLive.userId } }, '502'),
      streamRecord(stack, 'users', { userId: { S: onDead.userId } }, '503'),
    );
    await dead.kill();
    try {
      const res = await handler(event);
      assert.deepEqual(res.batchItemFailures, [{ itemIdentifier: '501' }, { itemIdentifier: '503' }]);
      assert.equal((await writer.get('users', onLive)).item?.v, 'new');
    } finally {
      await dead.restart({ keepData: false });
    }
    // Lambda retries from the first failed record; the consumer probes its down node on the way.
    const deadline = Date.now() + 15_000;
    let retried = await handler(batch(...event.Records.slice(1)));
    while (retried.batchItemFailures.length > 0 && Date.now() < deadline) {
      await sleep(250);
      retried = await handler(batch(...event.Records.slice(1)));
    }
    assert.deepEqual(retried.batchItemFailures, []);
  });

  test('a batch in which every record fails reports every record, in stream order, and does not throw', async () => {
    const lone = await startStack({ shards: 1 });
    try {
      const c = lone.cache();
      const h = createStreamHandler(c);
      const records = ['9', '10', '11', '8'].map((seq) => streamRecord(lone, 'users', { userId: { S: `all-${seq}` } }, seq));
      await lone.servers[0]!.kill();
      const res = await h(batch(...records));
      assert.deepEqual(res.batchItemFailures, [
        { itemIdentifier: '8' },
        { itemIdentifier: '9' },
        { itemIdentifier: '10' },
        { itemIdentifier: '11' },
      ]);
    } finally {
      await lone.stop();
    }
  });

  test('the Lambda entry takes the module-scope instance built from the environment', async () => {
    Object.assign(process.env, stack.env);
    const { handler: entry } = await import('../../functions/stream.ts');
    try {
      await writer.put('users', { userId: 'entry', v: 'old' });
      await writeAround('users', { userId: { S: 'entry' }, v: { S: 'new' }, _version: { N: '2' } });
      assert.deepEqual(await entry(batch(streamRecord(stack, 'users', { userId: { S: 'entry' } }, '600'))), { batchItemFailures: [] });
      assert.equal((await writer.get('users', { userId: 'entry' })).item?.v, 'new');
    } finally {
      await sharedItemCache().close();
    }
  });
});
