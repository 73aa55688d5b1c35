/**
 * Outside review (review1) of the commit deadline against the writer's fence, shards mode, strict.
 *
 * The fence is raised when BEGIN_WRITE runs on the node (Redis clock, R0) and holds for the fence time:
 * commit deadline + command timeout + 1 s (item-cache.ts fenceTimeMs). The commit deadline is counted
 * from when the writer *handles* the begin's answer (protocol.ts `beganAt: Date.now()`), and a reply
 * that arrived while the process was starved of CPU is accepted however late it is handled
 * (deadline.ts `afterIo`, on purpose). So a writer starved for longer than the command timeout plus the
 * margin between the begin running on the node and its answer being handled gets a commit deadline past
 * its own fence: the store enforces that deadline (nothing sent after it), but the deadline itself no
 * longer lies inside the fence. ARCHITECTURE.md, Limits: G1 under strict rests on "the DynamoDB write
 * finishing within its fence (the store stops the SDK at the commit deadline …)"; and "How a write
 * travels": "even a lost END_WRITE leaves nothing stale".
 *
 * The interleaving (one redis-server, the writer behind a TCP proxy that can hold the node's answers):
 * 1. n=1 is cached.
 * 2. W (strict) writes n=2. Its BEGIN_WRITE runs on the node (the fence field appears), and its answer
 *    is held by the proxy for a moment, then handed to W's socket.
 * 3. W's process is starved (a synchronous stall of this test process, as a CPU-starved or GC-paused
 *    container) for longer than the fence time (2.5 s here) while the answer waits in its socket.
 * 4. W handles the answer: the begin succeeded (the reply was there before its deadline's rejection
 *    could run), beganAt = now, commit deadline = now + 1 s, while its fence on the node has expired.
 * 5. Another container R misses: no live fence, a lease, a consistent read of n=1, FILL stores n=1.
 * 6. W commits n=2 within its commit deadline; its END_WRITE is lost (the proxy black-holes it).
 *    W is acknowledged.
 * 7. A read that starts after the acknowledged write, from a third container: a hit on n=1.
 * Expected: n=2 (G1 under strict). Failed on main at d63e513 (3 runs of 3). Fixed: the commit deadline
 * is counted from when the begin was sent (protocol.ts `beganAt`), never later than the fence started, so
 * the starved writer finds its deadline passed, sends nothing and is not acknowledged.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { eventually, startStack, type TestStack } from '../helpers/stack.ts';

/** A TCP proxy whose answers from the node can be held and released, or dropped (a black hole). */
class HoldingProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private held: { to: net.Socket; bytes: Buffer }[] = [];
  private holding = false;
  private cut = false;
  port = 0;

  private constructor(private readonly target: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(target: number): Promise<HoldingProxy> {
    const p = new HoldingProxy(target);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private accept(client: net.Socket): void {
    client.setNoDelay(true);
    const upstream = net.connect(this.target, '127.0.0.1');
    upstream.setNoDelay(true);
    this.sockets.add(client).add(upstream);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (b) => {
      if (!this.cut) upstream.write(b);
    });
    upstream.on('data', (b) => {
      if (this.cut) return;
      if (this.holding) this.held.push({ to: client, bytes: b });
      else client.write(b);
    });
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }

  hold(): void {
    this.holding = true;
  }

  /** Hands every held answer to the client's socket now (a synchronous write on loopback), then forwards again. */
  release(): void {
    this.holding = false;
    for (const { to, bytes } of this.held) to.write(bytes);
    this.held = [];
  }

  blackhole(): void {
    this.cut = true;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** This process does not run for `ms` (a container starved of CPU, a long GC pause). */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('review1: a writer starved between its begin and the begin’s answer', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  async function nInDynamo(userId: string): Promise<string | undefined> {
    const out = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: userId } }, ConsistentRead: true }),
    );
    return out.Item?.n?.N;
  }

  test("G1 (strict, shards mode): the commit deadline is counted from the begin's send, so a writer starved past its fence commits nothing, and no fill of the old item is served after an acknowledged write", async () => {
    const server = stack.servers[0]!;
    const proxy = await HoldingProxy.start(server.port);
    const admin = server.client();
    // Fence time = 1000 + 500 + 1000 = 2.5 s.
    const settings = { CACHE_WRITE_POLICY: 'strict', DYNAMODB_DEADLINE_MS: '1000', CACHE_COMMAND_TIMEOUT_MS: '500' };
    try {
      const key = { userId: 'starved-begin' };
      let inCommit: (() => Promise<void>) | undefined;
      const writer = stack.cache(
        { ...settings, CACHE_NODES: proxy.url },
        { hooks: { beforeCommit: () => (inCommit ? inCommit() : undefined) } },
      );
      let filled = false;
      const reader = stack.cache(
        { ...settings, CACHE_NODES: server.url },
        { hooks: { afterFill: (_k, stored) => void (filled = stored) } },
      );
      // Warm both containers' connections (a cold DynamoDB client may miss the short deadline once).
      await stack.cache().put('users', { ...key, n: 0 });
      for (const c of [writer, reader])
        await eventually('a warm read', async () =>
          c.get('users', key).then(
            () => true,
            () => false,
          ),
        );
      await eventually('n=1 written by the writer', async () =>
        writer.put('users', { ...key, n: 1 }).then(
          () => true,
          () => false,
        ),
      );
      assert.equal((await writer.get('users', key)).cache, 'hit', 'n=1 is cached');
      assert.equal((await reader.get('users', key)).item?.n, 1, 'the reader sees n=1');
      const redisKey = writer.resolve('users', key).redisKey;

      // 5. and 6.: once the writer handled its begin (late), R fills n=1, and W's END_WRITE will be lost.
      inCommit = async () => {
        inCommit = undefined;
        const r = await reader.get('users', key);
        assert.equal(r.item?.n, 1, 'R read before the commit');
        proxy.blackhole();
      };

      proxy.hold();
      const write = writer.put('users', { ...key, n: 2 });
      const outcome = write.then(
        () => 'acknowledged',
        (err: Error) => `refused: ${err.name}: ${err.message}`,
      );
      // 2. The begin ran on the node: its fence is there.
      await eventually('the writer’s begin ran on the node', async () => (await admin.hkeys(redisKey)).some((f) => f.startsWith('f:')));
      // 3. Its answer reaches the writer's socket, and the writer's process does not run for 3 s.
      proxy.release();
      stall(3000);

      const result = await outcome;
      assert.ok(filled, 'R filled n=1 after the writer’s fence had expired');
      // G1 speaks of acknowledged writes: a writer that sends nothing past its fence (and so answers
      // an error) keeps it; one that is acknowledged must be read.
      if (result !== 'acknowledged') {
        assert.equal(await nInDynamo(key.userId), '1', `the write was not acknowledged (${result}): nothing was written`);
        return;
      }
      assert.equal(await nInDynamo(key.userId), '2');

      // 7. A read that starts after the acknowledged write.
      const later = stack.cache({ ...settings, CACHE_NODES: server.url });
      const r = await later.get('users', key);
      assert.equal(r.item?.n, 2, `a read after the acknowledged write returns it (got n=${r.item?.n} from ${r.cache})`);
    } finally {
      admin.disconnect();
      await proxy.stop();
    }
  });
});
