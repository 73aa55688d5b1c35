/** G2 end to end: DynamoDB Local's real stream, fed to the consumer as Lambda would. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutItemCommand, DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import { eventually, startStack, type TestStack } from '../helpers/stack.ts';
import { localDynamoClientConfig } from '../helpers/dynamodb-local.ts';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { StreamFeed, type StreamFeedOptions, type StreamHandler } from '../../infra/local/stream-feed.ts';
import streamMappings from '../../infra/stream-mappings.cjs';
import { invalidateStreamRecords } from '../../lib/index.ts';
import type { ItemCache } from '../../lib/item-cache.ts';

describe('stream feed from DynamoDB Local', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let consumer: ItemCache;
  let feed: StreamFeed;
  let failNext = 0;
  const seen: string[] = [];
  before(async () => {
    stack = await startStack();
    cache = stack.cache();
    consumer = stack.cache();
    const handler: StreamHandler = async (event) => {
      seen.push(...event.Records.map((r) => r.eventName ?? '?'));
      if (failNext > 0) {
        failNext--;
        // The first record fails: Lambda retries from it.
        return { batchItemFailures: [{ itemIdentifier: event.Records[0]?.dynamodb?.SequenceNumber ?? '' }] };
      }
      return invalidateStreamRecords(consumer, event.Records);
    };
    feed = new StreamFeed({
      client: { ...localDynamoClientConfig(stack.env.DYNAMODB_ENDPOINT) },
      tables: stack.tables.map((t) => stack.prefix + t.name),
      handler,
      pollMs: 50,
      log: (m) => console.error(m),
    });
    await feed.start();
  });
  after(async () => {
    await feed.stop();
    await stack.stop();
  });

  test('G2: a change written straight to DynamoDB reaches the cache through the stream', async () => {
    const key = { userId: 'oob' };
    await cache.put('users', { ...key, v: 'lib' });
    assert.equal((await cache.get('users', key)).cache, 'hit');
    await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}users`, Item: { userId: { S: 'oob' }, v: { S: 'console' } } }));
    await eventually('the out-of-band value is read through the cache', async () => (await cache.get('users', key)).item?.v === 'console');
    await stack.dynamo.send(new DeleteItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: 'oob' } } }));
    await eventually('the out-of-band delete is read through the cache', async () => (await cache.get('users', key)).item === undefined);
  });

  test('a batch with failed records is retried from the failed one until applied', async () => {
    const key = { customerId: 'c', orderId: 'o' };
    await cache.put('orders', { ...key, v: 1 });
    assert.equal((await cache.get('orders', key)).cache, 'hit');
    const retriesBefore = feed.stats.retries;
    failNext = 2;
    await stack.dynamo.send(
      new PutItemCommand({ TableName: `${stack.prefix}orders`, Item: { customerId: { S: 'c' }, orderId: { S: 'o' }, v: { N: '2' } } }),
    );
    await eventually('the change is applied after the retries', async () => (await cache.get('orders', key)).item?.v === 2);
    assert.ok(feed.stats.retries >= retriesBefore + 2, `retries: ${feed.stats.retries - retriesBefore}`);
  });
});

describe('the stream feed behaves as the deploy’s event source mappings', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  /** A feed of one table's stream whose handler records what it was given. */
  function feedOf(table: string, handler: StreamHandler, options: Partial<StreamFeedOptions> = {}): StreamFeed {
    return new StreamFeed({
      client: localDynamoClientConfig(stack.env.DYNAMODB_ENDPOINT),
      tables: [stack.prefix + table],
      handler,
      pollMs: 50,
      ...options,
    });
  }

  const orderIds = (event: { Records: { dynamodb?: { Keys?: Record<string, { S?: string }> } }[] }) =>
    event.Records.map((r) => r.dynamodb?.Keys?.orderId?.S ?? '?');

  test('the settings are the deploy’s, from infra/stream-mappings.cjs', () => {
    const feed = feedOf('users', async () => {});
    assert.deepEqual(feed.mapping, streamMappings.mappingSettings(3600));
    assert.equal(feedOf('users', async () => {}, { largestTtlSeconds: 7200 }).mapping.maximumRecordAgeInSeconds, 7200 + 300);
  });

  test('records older than the maximum record age are dropped unprocessed', async () => {
    const seen: string[] = [];
    // The feed's clock three hours ahead: every record is older than the 3,900 s window.
    const feed = feedOf('users', async (e) => void seen.push(...e.Records.map((r) => r.eventID ?? '')), {
      now: () => Date.now() + 3 * 3600_000,
    });
    await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}users`, Item: { userId: { S: 'aged' } } }));
    await feed.start();
    try {
      await eventually('the record is dropped', async () => feed.stats.expired >= 1);
      assert.deepEqual(seen, []);
      assert.equal(feed.stats.records, 0);
    } finally {
      await feed.stop();
    }
  });

  test('a batch whose invocation fails is split in two until the failing record is alone; past the retry limit it is dropped', async () => {
    const batches: string[][] = [];
    const applied: string[] = [];
    const feed = feedOf(
      'orders',
      async (e) => {
        const ids = orderIds(e);
        batches.push(ids);
        if (ids.includes('poison')) throw new Error('the function failed');
        applied.push(...ids);
      },
      { mapping: { maximumRetryAttempts: 2 } },
    );
    for (const orderId of ['o1', 'o2', 'poison', 'o3']) {
      await stack.dynamo.send(
        new PutItemCommand({ TableName: `${stack.prefix}orders`, Item: { customerId: { S: 'c' }, orderId: { S: orderId } } }),
      );
    }
    await feed.start();
    try {
      await eventually('every other record is applied', async () => ['o1', 'o2', 'o3'].every((o) => applied.includes(o)));
      assert.ok(feed.stats.bisections >= 1, JSON.stringify(batches));
      assert.equal(feed.stats.discarded, 1);
      // The poison alone, tried once and retried twice, then dropped.
      assert.equal(batches.filter((b) => b.length === 1 && b[0] === 'poison').length, 3, JSON.stringify(batches));
      assert.ok(!applied.includes('poison'));
    } finally {
      await feed.stop();
    }
  });

  test('a refused GetShardIterator is retried, never an unhandled rejection; without ReportBatchItemFailures the answer is ignored', async () => {
    // Prepare: a Streams client whose first three GetShardIterator calls fail.
    const streams = new DynamoDBStreamsClient(localDynamoClientConfig(stack.env.DYNAMODB_ENDPOINT));
    let refusals = 3;
    streams.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'GetShardIteratorCommand' && refusals-- > 0) {
          throw Object.assign(new Error('injected: iterator refused'), { name: 'InternalServerError' });
        }
        return next(args);
      },
      { step: 'initialize', name: 'refuseIterators' },
    );
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    const logs: string[] = [];
    const seen: string[] = [];
    const feed = feedOf(
      'readings',
      async (e) => {
        seen.push(...e.Records.map((r) => r.dynamodb?.SequenceNumber ?? ''));
        return { batchItemFailures: e.Records.map((r) => ({ itemIdentifier: r.dynamodb?.SequenceNumber ?? '' })) };
      },
      { streamsClient: streams, log: (m) => logs.push(m), mapping: { functionResponseType: undefined } },
    );
    await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}readings`, Item: { sensorId: { S: 's' }, ts: { N: '1' } } }));
    await feed.start();
    try {
      await eventually('the record is delivered once the iterator is given', async () => seen.length >= 1);
      assert.ok(logs.filter((m) => /GetShardIterator .* failed, retrying/.test(m)).length >= 3, logs.join('\n'));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(seen.length, 1, 'the failures answered were ignored: no retry');
      assert.equal(feed.stats.retries, 0);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await feed.stop();
    }
  });

  test('scheduled functions (the sweep) run on their period, one run at a time, and stop with the feed', async () => {
    let runs = 0;
    let running = 0;
    let most = 0;
    const feed = feedOf('users', async () => {}, {
      schedules: [
        {
          everyMs: 20,
          handler: async () => {
            runs++;
            most = Math.max(most, ++running);
            await new Promise((r) => setTimeout(r, 100));
            running--;
          },
        },
      ],
    });
    await feed.start();
    await eventually('the schedule ran a few times', async () => runs >= 3);
    await feed.stop();
    const after = runs;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(runs, after, 'no run after stop');
    assert.equal(most, 1, 'never two runs at once');
  });
});
