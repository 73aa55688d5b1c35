/** G2 end to end: DynamoDB Local's real stream, fed to the consumer as Lambda would. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PutItemCommand, DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import { eventually, startStack, type TestStack } from '../helpers/stack.ts';
import { localDynamoClientConfig } from '../helpers/dynamodb-local.ts';
import { StreamFeed, type StreamHandler } from '../../infra/local/stream-feed.ts';
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
