/**
 * Outside review (review3) of the writer's DynamoDB commit against time: an SDK attempt that DynamoDB
 * applies late, after the write it belongs to was acknowledged through a retry.
 *
 * The store bounds a write's DynamoDB calls by the commit deadline (lib/store.ts `until`), and the
 * fence outlasts it; ARCHITECTURE.md, Limits, covers a late-applied request only for a write that was
 * never acknowledged ("a request the client gave up on that DynamoDB still applies later was never
 * acknowledged"). But each attempt is also bounded by DYNAMODB_TIMEOUT_MS, after which the SDK retries
 * (DYNAMODB_MAX_ATTEMPTS, 3 by default): the attempt given up on may still be in the network or in
 * DynamoDB's front end, and be applied after the retry succeeded and the write was acknowledged. A
 * put is conditional on the version, so its late attempt fails its condition. An `update` without
 * `ifVersion` is conditional only on the item existing (store.ts `update`: `attribute_exists`), so its
 * late attempt is applied again, whatever was written since.
 *
 * The interleaving (one redis-server; the writer's DynamoDB traffic through a TCP proxy that can hold
 * one request and deliver it later, as a slow network path or a slow DynamoDB front end does):
 * 1. n=1, tag='v1'.
 * 2. W1 (strict) updates n=2. Its first attempt is held by the proxy; after DYNAMODB_TIMEOUT_MS the
 *    SDK gives up on it and retries on a new connection: applied, W1 is acknowledged (n=2).
 * 3. W2 (another container, strict) puts n=3, tag='v3': acknowledged.
 * 4. W1's first attempt reaches DynamoDB now: `SET n = 2`, applied (the item exists).
 * 5. A read that starts after W2's acknowledged write, from a container without the cache's entry in
 *    the way (CACHE_MODE=off; the cache's own entry is dropped too once the stream record of step 4
 *    arrives, G2): n=2, the value W2's acknowledged write replaced.
 * Expected: n=3 (G1: no read that starts later returns an older value). The cache plays no part: every
 * mode and policy.
 *
 * The fix (lib/write-once.ts): an attempt that may have reached DynamoDB is never retried by the SDK;
 * W1 fails as uncertain (StoreUnavailableError, nothingWritten false) and is not acknowledged, so its
 * late attempt is a write never acknowledged landing late (ARCHITECTURE.md, Limits). Each case below
 * holds a write's first attempt and checks that the write is not acknowledged while that attempt is
 * still on its way, and that nothing else of it was applied: the reviewer's update, an unconditional
 * delete (its late attempt would remove an item re-created since), a create (its late attempt would
 * bring back an item deleted since), and the drop-in client's update (sent through the caller's client).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { StoreUnavailableError, withCache } from '../../lib/index.ts';
import { dynamoEndpoint, eventually, startStack, type TestStack } from '../helpers/stack.ts';
import { RequestHoldingProxy } from '../helpers/request-holding-proxy.ts';

describe('review3: an SDK attempt applied after its write was acknowledged through a retry', () => {
  let stack: TestStack;
  let proxy: RequestHoldingProxy;
  before(async () => {
    stack = await startStack({ shards: 1 });
    proxy = await RequestHoldingProxy.start(dynamoEndpoint());
  });
  after(async () => {
    await proxy.stop();
    await stack.stop();
  });

  const strict = { CACHE_WRITE_POLICY: 'strict' };
  /** A container whose DynamoDB traffic goes through the proxy; an attempt is given up on after 400 ms. */
  const throughProxy = () => stack.cache({ ...strict, DYNAMODB_ENDPOINT: proxy.url, DYNAMODB_TIMEOUT_MS: '400' });

  async function inDynamo(userId: string): Promise<{ n?: string; tag?: string } | undefined> {
    const out = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: userId } }, ConsistentRead: true }),
    );
    return out.Item === undefined ? undefined : { n: out.Item.n?.N, tag: out.Item.tag?.S };
  }

  /** Warms the container's connection through the proxy (DynamoDB Local's first answers can be slow). */
  async function warm(cache: ReturnType<typeof throughProxy>): Promise<void> {
    await eventually('a read through the proxy', async () =>
      cache.get('users', { userId: 'warm-up' }).then(
        () => true,
        () => false,
      ),
    );
  }

  /**
   * Holds the first attempt of `write`: the write must not be acknowledged (its attempt may still be
   * applied, after any later acknowledged write), but fail as uncertain; and nothing else of it was
   * applied (the SDK sent no retry). Then the held attempt is delivered.
   */
  async function heldWriteIsUncertain(userId: string, write: () => Promise<unknown>): Promise<void> {
    const before = await inDynamo(userId);
    proxy.holdNextRequest();
    const outcome = await write().then(
      () => 'acknowledged',
      (err: unknown) => err,
    );
    assert.ok(proxy.holding, "the write's first attempt was held by the proxy");
    try {
      assert.notEqual(outcome, 'acknowledged', 'a write whose first attempt is still on its way is not acknowledged');
      const uncertain =
        outcome instanceof StoreUnavailableError ? !outcome.nothingWritten : (outcome as { name?: string }).name === 'TimeoutError';
      assert.ok(uncertain, `the write fails as uncertain; got ${String(outcome)}`);
      assert.deepEqual(await inDynamo(userId), before, 'no retry of the held attempt was applied');
    } finally {
      await proxy.deliver();
    }
  }

  test('G1 (strict, shards mode; any mode and policy): an update acknowledged after a retry is not applied again over a later acknowledged write', async () => {
    const key = { userId: 'late-attempt' };
    const w1 = throughProxy();
    const w2 = stack.cache(strict);
    await w2.put('users', { ...key, n: 1, tag: 'v1' });
    await warm(w1);
    // 2. W1's first attempt is held: W1 is not acknowledged (before the fix, its retry was, with n=2).
    await heldWriteIsUncertain(key.userId, () => w1.update('users', key, { set: { n: 2 } }));
  });

  test('G1: an unconditional delete is not acknowledged while its first attempt, which would remove an item re-created since, is on its way', async () => {
    const key = { userId: 'late-delete' };
    const w1 = throughProxy();
    await stack.cache(strict).put('users', { ...key, n: 1, tag: 'v1' });
    await warm(w1);
    await heldWriteIsUncertain(key.userId, () => w1.delete('users', key));
  });

  test('G1: a create is not acknowledged while its first attempt, which would bring back an item deleted since, is on its way', async () => {
    const key = { userId: 'late-create' };
    const w1 = throughProxy();
    await warm(w1);
    await heldWriteIsUncertain(key.userId, () => w1.put('users', { ...key, n: 1, tag: 'v1' }));
  });

  test("G1: the drop-in client's update, sent through the caller's client, is not acknowledged while its first attempt is on its way", async () => {
    const key = { userId: 'late-drop-in' };
    const w1 = throughProxy();
    await stack.cache(strict).put('users', { ...key, n: 1, tag: 'v1' });
    await warm(w1);
    // The caller's own client: through the proxy, an attempt given up on after 400 ms, the SDK's default attempts (3).
    const callers = new DynamoDBClient({
      region: 'us-east-1',
      endpoint: proxy.url,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      requestHandler: { requestTimeout: 400, throwOnRequestTimeout: true },
    });
    try {
      const client = withCache(DynamoDBDocumentClient.from(callers), { cache: w1 });
      await eventually('the caller reads through the proxy', async () =>
        callers.send(new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: 'warm-up' } } })).then(
          () => true,
          () => false,
        ),
      );
      await heldWriteIsUncertain(key.userId, () =>
        client.send(
          new UpdateCommand({
            TableName: `${stack.prefix}users`,
            Key: key,
            UpdateExpression: 'SET n = :n',
            ExpressionAttributeValues: { ':n': 2 },
          }),
        ),
      );
    } finally {
      callers.destroy();
    }
  });
});
