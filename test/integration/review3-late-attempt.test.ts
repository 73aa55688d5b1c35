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
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { dynamoEndpoint, eventually, startStack, type TestStack } from '../helpers/stack.ts';

/** A TCP proxy in front of DynamoDB Local that can hold the next request it is sent, and deliver it later. */
class RequestHoldingProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private holdNext = false;
  private held: { upstream: net.Socket; bytes: Buffer[] } | undefined;
  port = 0;

  private constructor(
    private readonly host: string,
    private readonly target: number,
  ) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(endpoint: string): Promise<RequestHoldingProxy> {
    const url = new URL(endpoint);
    const p = new RequestHoldingProxy(url.hostname, Number(url.port));
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.target, this.host);
    this.sockets.add(client).add(upstream);
    let holding: Buffer[] | undefined;
    client.on('data', (b) => {
      if (holding === undefined && this.holdNext) {
        this.holdNext = false;
        holding = [];
        this.held = { upstream, bytes: holding };
      }
      if (holding !== undefined) holding.push(b);
      else upstream.write(b);
    });
    upstream.on('data', (b) => {
      if (holding === undefined) client.write(b);
    });
    // A connection whose request is held outlives its client (the SDK gives up on it and closes it):
    // the request is still on its way.
    client
      .on('error', () => undefined)
      .on('close', () => {
        if (holding === undefined) upstream.destroy();
      });
    upstream.on('error', () => undefined).on('close', () => client.destroy());
  }

  /** Holds the next request sent on any connection (and whatever follows it on that connection). */
  holdNextRequest(): void {
    this.holdNext = true;
  }

  get holding(): boolean {
    return this.held !== undefined;
  }

  /** Delivers the held request to DynamoDB; resolves once DynamoDB has answered it. */
  async deliver(): Promise<string> {
    const held = this.held;
    if (held === undefined) throw new Error('no request is held');
    const answered = new Promise<string>((resolve) =>
      held.upstream.once('data', (b) => resolve(b.toString('latin1').split('\r\n')[0] ?? '')),
    );
    for (const b of held.bytes) held.upstream.write(b);
    return answered;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

describe('review3: an SDK attempt applied after its write was acknowledged through a retry', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  async function inDynamo(userId: string): Promise<{ n?: string; tag?: string }> {
    const out = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: userId } }, ConsistentRead: true }),
    );
    return { n: out.Item?.n?.N, tag: out.Item?.tag?.S };
  }

  test('G1 (strict, shards mode; any mode and policy): an update acknowledged after a retry is not applied again over a later acknowledged write', async () => {
    const proxy = await RequestHoldingProxy.start(dynamoEndpoint());
    try {
      const key = { userId: 'late-attempt' };
      const strict = { CACHE_WRITE_POLICY: 'strict' };
      // W1's DynamoDB traffic goes through the proxy; an attempt is given up on after 400 ms and retried
      // (DYNAMODB_MAX_ATTEMPTS at its default, 3), within the commit deadline (6 s).
      const w1 = stack.cache({ ...strict, DYNAMODB_ENDPOINT: proxy.url, DYNAMODB_TIMEOUT_MS: '400' });
      const w2 = stack.cache(strict);
      await w2.put('users', { ...key, n: 1, tag: 'v1' });
      // Warm W1's connection to DynamoDB through the proxy (DynamoDB Local's first answers can be slow).
      await eventually('W1 reads through the proxy', async () =>
        w1.get('users', key).then(
          (r) => r.item?.n === 1,
          () => false,
        ),
      );

      // 2. W1's first attempt is held; its retry is applied and W1 is acknowledged.
      proxy.holdNextRequest();
      await w1.update('users', key, { set: { n: 2 } });
      assert.ok(proxy.holding, "W1's first attempt was held by the proxy (and the SDK retried it)");
      assert.equal((await inDynamo(key.userId)).n, '2', 'W1 was acknowledged: n=2');

      // 3. W2 is acknowledged after W1.
      await w2.put('users', { ...key, n: 3, tag: 'v3' });
      assert.deepEqual(await inDynamo(key.userId), { n: '3', tag: 'v3' }, 'W2 was acknowledged: n=3');

      // 4. W1's first attempt reaches DynamoDB.
      const status = await proxy.deliver();

      // 5. A read that starts after W2's acknowledged write.
      const reader = stack.cache({ CACHE_MODE: 'off' });
      const r = await reader.get('users', key);
      assert.equal(
        r.item?.n,
        3,
        `a read after W2's acknowledged write (n=3, tag=v3) returns it; got n=${r.item?.n}, tag=${r.item?.tag} (W1's given-up attempt answered ${status})`,
      );
    } finally {
      await proxy.stop();
    }
  });
});
