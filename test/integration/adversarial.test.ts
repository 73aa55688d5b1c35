/**
 * Adversarial review of the rewritten protocol (issue 11): faults and interleavings that are in no
 * list (not R1–R9's, not the nine defects'), each forced against real redis-server processes, DynamoDB
 * Local and a real TCP proxy. A test here that fails is a break of a guarantee; its comment gives the
 * interleaving step by step.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { eventually, Gate, manualClock, rawDynamoClient, startStack, type TestStack } from '../helpers/stack.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import { streamRecord } from '../helpers/faults.ts';
import { invalidateStreamRecords } from '../../lib/index.ts';
import { epochTag } from '../../lib/cache/scripts.ts';

describe('adversarial: interleavings and faults outside every list', () => {
  let stack: TestStack;
  before(async () => {
    // One node for the tests that need no fault on it; the others start (and restart) nodes of their own.
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  /** The item as DynamoDB holds it now (strongly consistent). */
  async function inDynamo(key: { userId: string }): Promise<number | undefined> {
    const out = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: key.userId } }, ConsistentRead: true }),
    );
    const n = out.Item?.n?.N;
    return n === undefined ? undefined : Number(n);
  }

  test('G1 (strict): a node restarted empty is sealed without a settle by a container that never knew it, so a writer whose fence died with the restart and whose end was lost is overtaken by a fill of the old item', async () => {
    // 1. Writer A (strict) begins on epoch E1: its fence is on the node.
    // 2. The node is SIGKILLed and restarted empty (E2): A's fence is gone. A's connection is cut
    //    (it cannot reach the node yet: the proxy black-holes it), so A's container cannot seal E2.
    // 3. Container C, cold (it never knew E1), is the first to reach the node: SEAL sees DBSIZE 0 and
    //    a client with no previous run_id, so E2 does not settle. C misses, takes a lease, reads n=1.
    // 4. A commits n=2; its END_WRITE cannot reach the node (lost with the restart): A acknowledges.
    // 5. C fills n=1: its lease is intact (nothing lowered it, no fence, no settle).
    // 6. Any later read hits n=1 although n=2 was acknowledged: G1 broken under strict, although
    //    "the node's data was lost" is one of the cases G1 is promised for (cache-protocol.md).
    // ARCHITECTURE.md's Limits (as merged on main) now list this ("the node not restarting empty under a cold client in
    // that moment") as a node that "cannot be told from a first start". It need not be told apart:
    // settling every new epoch, a first start included, costs one fence time of fills once per
    // epoch, and closes the window.
    const server = await RedisServer.start(); // its own node: no other test's container may seal it
    const proxy = await TcpProxy.start(server.port);
    const direct = { CACHE_NODES: server.url };
    try {
      const key = { userId: 'restart-cold-sealer' };
      const commit = new Gate();
      let holdCommit = false;
      const writer = stack.cache(
        { CACHE_NODES: proxy.url, CACHE_WRITE_POLICY: 'strict' },
        { hooks: { beforeCommit: () => (holdCommit ? commit.hold() : undefined) } },
      );
      await writer.put('users', { ...key, n: 1 });
      assert.equal((await writer.get('users', key)).cache, 'hit', 'n=1 is cached on E1');

      holdCommit = true;
      const write = writer.put('users', { ...key, n: 2 });
      await commit.reached; // A's begin ran on E1

      proxy.cut();
      await server.kill();
      await server.startAgain(); // empty: a new run_id, no data, no fences

      const fill = new Gate();
      const cold = stack.cache({ ...direct, CACHE_WRITE_POLICY: 'strict' }, { hooks: { beforeFill: () => fill.hold() } });
      const coldRead = cold.get('users', key);
      await fill.reached; // C holds a lease and has read n=1 from DynamoDB
      const rk = cold.resolve('users', key);
      assert.equal(cold.nodeFor(rk)!.health().status, 'up', 'E2 was sealed without a settle');

      commit.open();
      assert.equal((await write).version, 2, "A's write is acknowledged");
      assert.equal(await inDynamo(key), 2);

      fill.open();
      assert.equal((await coldRead).item?.n, 1, 'C read before the commit');

      const later = stack.cache({ ...direct, CACHE_WRITE_POLICY: 'strict' });
      const r = await later.get('users', key);
      assert.equal(r.item?.n, 2, `a read that starts after the acknowledged write returns it (got n=${r.item?.n}, ${r.cache})`);
    } finally {
      await proxy.stop();
      await server.stop();
    }
  });

  test("G1 (strict): the settle after a restart lasts the sealer's fence time, not the longest fence a live writer holds, so with two deploys live (another DYNAMODB_DEADLINE_MS) a writer outlives the settle", async () => {
    // The same restart, sealed this time by a warm container, which settles, but for its own fence
    // time: 1500 + 500 + 1000 ms. Writer A runs another deploy's settings (DYNAMODB_DEADLINE_MS 6000:
    // its fence, 7.5 s, is the one the settle stands in for).
    // 1. A (strict) begins on E1; its DynamoDB call then takes about 3.5 s (within its 6 s deadline).
    // 2. The node restarts empty; A's connection is cut, so its end will be lost.
    // 3. Warm container B (it knew E1) seals E2 and settles for 3 s; once that is over it misses,
    //    reads n=1 and fills it.
    // 4. A commits n=2 and acknowledges (its end lost with the restart).
    // 5. A later read hits n=1.
    const server = await RedisServer.start(); // its own node: no other test's container may seal it
    const proxy = await TcpProxy.start(server.port);
    const direct = { CACHE_NODES: server.url };
    const admin = server.client();
    try {
      const key = { userId: 'restart-short-settle' };
      const commit = new Gate();
      let holdCommit = false;
      const writer = stack.cache(
        { CACHE_NODES: proxy.url, CACHE_WRITE_POLICY: 'strict' },
        { hooks: { beforeCommit: () => (holdCommit ? commit.hold() : undefined) } },
      );
      const warm = stack.cache({ ...direct, CACHE_WRITE_POLICY: 'strict', DYNAMODB_DEADLINE_MS: '1500' });
      await writer.put('users', { ...key, n: 1 });
      assert.equal((await warm.get('users', key)).item?.n, 1, 'B knows E1');
      const rk = warm.resolve('users', key);

      holdCommit = true;
      const write = writer.put('users', { ...key, n: 2 });
      await commit.reached;

      proxy.cut();
      await server.kill();
      await server.startAgain();
      const node = warm.nodeFor(rk)!;
      await eventually('B reconnected and settling', async () => node.health().status === 'settling');

      // B reconnects by itself, seals E2 and settles for its own fence time; then it fills n=1.
      await eventually('B fills after its settle', async () => {
        await warm.get('users', key);
        return (await admin.hexists(rk.redisKey, 'd').catch(() => 0)) === 1;
      });

      commit.open();
      // Acknowledged: its commit ended within its own deadline (past it, the store would have aborted it).
      assert.equal((await write).version, 2, "A's write is acknowledged");
      assert.equal(await inDynamo(key), 2);

      const later = stack.cache({ ...direct, CACHE_WRITE_POLICY: 'strict' });
      const r = await later.get('users', key);
      assert.equal(r.item?.n, 2, `a read that starts after the acknowledged write returns it (got n=${r.item?.n}, ${r.cache})`);
    } finally {
      await admin.quit().catch(() => undefined);
      await proxy.stop();
      await server.stop();
    }
  });

  /** Fills the node with another tenant's data and sets maxmemory below it under noeviction (Redis's default policy). */
  async function pastMaxmemory(admin: ReturnType<RedisServer['client']>): Promise<number> {
    const filler = 'f'.repeat(8000);
    for (let i = 0; i < 400; i++) await admin.set(`tenant:${i}`, filler);
    const limit = usedMemory(await admin.info('memory')) - 512 * 1024;
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    await admin.config('SET', 'maxmemory', String(limit));
    await assert.rejects(admin.set('probe', 'x'), /OOM/, 'the node is past maxmemory');
    return limit;
  }

  const usedMemory = (info: string): number => Number(/used_memory:(\d+)/.exec(info)?.[1]);

  test('G3 (strict): past maxmemory under noeviction the node still answers and still deletes, yet a strict write of a cached key is refused', async () => {
    // 1. An entry is cached (d present).
    // 2. The node is past maxmemory under noeviction (another tenant's data here; the library's own
    //    entries, an hour's TTL by default, do the same). Redis then refuses a script's first write
    //    when it may grow memory (HSET), and allows deletions.
    // 3. A strict write: BEGIN_WRITE's first write is `HSET h` (it sets the entry aside before it
    //    drops it): an OOM error reply, a real failure to the node state machine, and the write is
    //    refused with CacheUnavailableError, although the node answers PING and an HDEL of the entry
    //    (allowed at maxmemory) would have invalidated it. So it stays until memory frees.
    const server = await RedisServer.start();
    const admin = server.client();
    try {
      const c = stack.cache({ CACHE_NODES: server.url, CACHE_WRITE_POLICY: 'strict' });
      const key = { userId: 'oom-cached' };
      await c.put('users', { ...key, n: 1 });
      assert.equal((await c.get('users', key)).cache, 'hit', 'n=1 is cached');
      await pastMaxmemory(admin);
      let refused: Error | undefined;
      try {
        await c.put('users', { ...key, n: 2 });
      } catch (err) {
        refused = err as Error;
      }
      assert.equal(await admin.ping(), 'PONG', 'the node answers');
      assert.equal(await admin.hdel(c.resolve('users', key).redisKey, 'd'), 1, 'and deletes the entry when asked to');
      assert.equal(refused, undefined, `a strict write was refused while the node answered: ${refused?.message ?? ''}`);
    } finally {
      await admin.quit().catch(() => undefined);
      await server.stop();
    }
  });

  test("G3: past maxmemory under noeviction the scripts whose first write is a deletion still grow memory: the library writes past the node's limit", async () => {
    // BEGIN_WRITE on a key with no entry starts with HDEL, END_WRITE with HDEL of its fence, and Redis
    // checks maxmemory only at a script's first write: from then on HSET is allowed. So every write of
    // a new key stores its entry on a node already past maxmemory, which grows without bound (swap,
    // then the OOM killer), where noeviction promises the operator it stays under the limit.
    const server = await RedisServer.start();
    const admin = server.client();
    try {
      const c = stack.cache({ CACHE_NODES: server.url });
      await c.put('users', { userId: 'oom-grow-0', n: 0 }); // connected and sealed before the node is full
      const limit = await pastMaxmemory(admin);
      const big = 'x'.repeat(8000);
      for (let i = 1; i <= 150; i++) await c.put('users', { userId: `oom-grow-${i}`, n: i, big });
      const used = usedMemory(await admin.info('memory'));
      const cached = await admin.hexists(c.resolve('users', { userId: 'oom-grow-150' }).redisKey, 'd');
      assert.ok(
        used <= limit + 512 * 1024,
        `the node holds ${used - limit} bytes past its maxmemory (${limit}); the last entry is ${cached ? 'cached' : 'not cached'}`,
      );
    } finally {
      await admin.quit().catch(() => undefined);
      await server.stop();
    }
  });

  test('G1: the cache turned off (CACHE_MODE=off, as during an incident) and on again serves the entries of before: the writes and stream records in between invalidated nothing', async () => {
    // 1. n=1 is cached (epoch E, TTL an hour by default).
    // 2. The cache is turned off (a deploy with CACHE_MODE=off): a write of n=2 goes to DynamoDB
    //    only, and the Streams consumer (same deploy) has no node to invalidate.
    // 3. The cache is turned on again (the next deploy): the node kept its run_id and its sealed
    //    epoch, so the entry n=1 is trusted: a hit, older than the acknowledged write, until its TTL.
    //    No document says that turning the cache off needs a flush before it is turned on.
    const server = await RedisServer.start();
    try {
      const on = { CACHE_NODES: server.url };
      const key = { userId: 'off-and-on' };
      const before = stack.cache(on);
      await before.put('users', { ...key, n: 1 });
      assert.equal((await before.get('users', key)).cache, 'hit');
      await before.close();

      const off = stack.cache({ CACHE_MODE: 'off' });
      assert.equal((await off.put('users', { ...key, n: 2 })).version, 2, 'acknowledged');
      const rk = off.resolve('users', key);
      const consumed = await invalidateStreamRecords(off, [streamRecord(off, rk, '200')]);
      assert.equal(consumed.batchItemFailures.length, 0, 'the stream record was consumed');

      const after = stack.cache(on);
      const r = await after.get('users', key);
      assert.equal(r.item?.n, 2, `a read after the acknowledged write returns it (got n=${r.item?.n}, ${r.cache})`);
    } finally {
      await server.stop();
    }
  });

  test('G3: a stall of little more than a second (three silent re-probes) is treated as a lost connection: the node answers again with the same run_id, yet is kept from reads for start cycles × check interval (two minutes by default)', async () => {
    // 1. The node stalls (SIGSTOP: a fork for BGSAVE on a large data set, a slow command, a noisy
    //    neighbour). A read gets no answer: the node is down, suspect, re-probed after 100 ms.
    // 2. Re-probes follow at 100, 200 and 400 ms of back-off (counted from each probe's start), each
    //    waiting the command timeout: with 250 ms (the default) the third gives up about 1.25 s into
    //    the stall (about 2.1 s with this stack's 500 ms), in a container that keeps serving requests
    //    (they start the probes).
    // 3. After the third silent probe the connection is replaced (defect 8's cure for a black hole).
    // 4. The node answers again on the new connection, same run_id, nothing owed. The rule of issue
    //    11: "a node that timed out but answers again with the same run id, and to which this
    //    container owes no invalidation, may be trusted again at once". Here it is `starting`: no
    //    trusted read for CACHE_START_CYCLES × CACHE_CHECK_INTERVAL_SECONDS, and every container
    //    that was busy during the stall does the same.
    const server = await RedisServer.start();
    try {
      const clock = manualClock();
      const c = stack.cache({ CACHE_NODES: server.url }, { clock: clock.now }); // default check interval and start cycles
      const key = { userId: 'long-stall' };
      await c.put('users', { ...key, n: 1 });
      assert.equal((await c.get('users', key)).cache, 'hit');
      const node = c.nodeFor(c.resolve('users', key))!;
      const runId = await server.runId();
      server.pause();
      try {
        assert.equal((await c.get('users', key)).cache, 'bypass');
        assert.equal(node.status, 'down');
        for (const backoff of [100, 200, 400]) {
          clock.advance(backoff);
          void node.status;
          assert.equal(await node.probing, false, 'a silent re-probe');
        }
      } finally {
        server.resume();
      }
      assert.equal(await server.runId(), runId, 'the same process, the same data: it only stalled');
      await eventually('reconnected', async () => node.client.status === 'ready');
      clock.advance(1000);
      await node.probeNow();
      assert.equal(node.status, 'up', `trusted again once it answers (it is ${node.status})`);
      assert.equal((await c.get('users', key)).cache, 'hit');
    } finally {
      await server.stop();
    }
  });

  test("G1 (strict): a primary demoted after a failover keeps its clients' connections and its run_id; resynced from the promoted replica it serves, under its old epoch tag, an entry older than a write it acknowledged in the failover window", async () => {
    // 1. P is the primary, R its replica; n=1 is cached on P (tagged with P's epoch) and replicated.
    // 2. Failover: R is promoted (the endpoint moves to R for new connections).
    // 3. Writer W, still connected to P (asynchronous failover: P has not been demoted yet), writes
    //    n=2: BEGIN_WRITE and END_WRITE run on P, W acknowledges. R never sees them.
    // 4. P is demoted: REPLICAOF R, a full resync: P's data is now R's, with n=1 under P's tag
    //    (replicated from P before the failover). Redis keeps P's clients connected, and P keeps its
    //    run_id: the epoch check sees nothing new.
    // 5. Reader X, connected to P since before, hits n=1: HGET works on a replica, so X never even
    //    sees an error. (ARCHITECTURE.md's Limits argue that replicas are never written to directly;
    //    a demoted primary is read through the connections it had.)
    const primary = await RedisServer.start();
    const replica = await RedisServer.startReplicaOf(primary);
    const pAdmin = primary.client();
    const rAdmin = replica.client();
    try {
      const env = { CACHE_NODES: primary.url, CACHE_WRITE_POLICY: 'strict' };
      const key = { userId: 'demoted-primary' };
      const writer = stack.cache(env);
      const reader = stack.cache(env);
      await writer.put('users', { ...key, n: 1 });
      assert.equal((await reader.get('users', key)).cache, 'hit');
      const rk = reader.resolve('users', key);
      await eventually('n=1 replicated', async () => (await rAdmin.hget(rk.redisKey, 'd')) === (await pAdmin.hget(rk.redisKey, 'd')));

      await replica.promote();
      assert.equal((await writer.put('users', { ...key, n: 2 })).version, 2, 'acknowledged by the old primary');
      assert.equal(await inDynamo(key), 2);

      await pAdmin.call('REPLICAOF', '127.0.0.1', String(replica.port));
      await eventually('the old primary resynced from the new one', async () => {
        const info = await pAdmin.info('replication');
        return /master_link_status:up/.test(info) && (await pAdmin.hget(rk.redisKey, 'd')) === (await rAdmin.hget(rk.redisKey, 'd'));
      });
      const r = await reader.get('users', key);
      assert.equal(r.item?.n, 2, `a read after the acknowledged write returns it (got n=${r.item?.n}, ${r.cache})`);
    } finally {
      await pAdmin.quit().catch(() => undefined);
      await rAdmin.quit().catch(() => undefined);
      await replica.stop();
      await primary.stop();
    }
  });

  test('G3 (strict): a container connected to a primary that a failover demoted has every write refused (READONLY) for as long as its connection lives, while the new primary answers', async () => {
    // The connection a container opened before the failover stays open on the demoted primary
    // (Redis keeps clients on REPLICAOF; the library sets no reconnectOnError). Every script that
    // writes gets READONLY, an error reply: a real failure, never a reason to reconnect. The probe
    // succeeds (INFO, and SEAL only reads an existing seal), so each strict write probes, begins,
    // is refused, and the next does the same, with no end while the container lives.
    const primary = await RedisServer.start();
    const replica = await RedisServer.startReplicaOf(primary);
    const pAdmin = primary.client();
    try {
      const env = { CACHE_NODES: primary.url, CACHE_WRITE_POLICY: 'strict' };
      const key = { userId: 'demoted-writes' };
      const clock = manualClock();
      const writer = stack.cache(env, { clock: clock.now });
      await writer.put('users', { ...key, n: 1 });
      await replica.promote();
      await pAdmin.call('REPLICAOF', '127.0.0.1', String(replica.port));
      await eventually('demoted', async () => /master_link_status:up/.test(await pAdmin.info('replication')));
      const fresh = stack.cache({ ...env, CACHE_NODES: replica.url }); // a container whose endpoint resolves to the new primary
      assert.equal((await fresh.put('users', { ...key, n: 2 })).version, 2, 'the new primary takes writes');
      const refusals: string[] = [];
      for (let i = 3; i <= 5; i++) {
        clock.advance(1100); // past the once-a-second probe of a failed node
        await writer.put('users', { ...key, n: i }).catch((err: Error) => refusals.push(err.message));
      }
      assert.deepEqual(refusals, [], 'writes from the old connection are not refused for good');
    } finally {
      await pAdmin.quit().catch(() => undefined);
      await replica.stop();
      await primary.stop();
    }
  });

  test("G4: a put's read-back (nested numbers) takes another writer's item for its own when the item was deleted and created again in between: versions start again at 1", async () => {
    // 1. Writer A puts a new item with a nested number: version 1. Its read-back (inside the fence)
    //    is to return DynamoDB's own spelling of the nested numbers.
    // 2. Before the read-back, B deletes the item and C creates it again: version 1 again, since a
    //    created item's version starts at 1.
    // 3. A's read-back finds version 1 = the version it wrote, takes C's item for its own and answers
    //    it as the result of A's write (the cache is right: A's end drops; the answer is wrong).
    const key = { userId: 'readback-aba' };
    const other = stack.cache();
    let interleave = true;
    const client = rawDynamoClient();
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const out = await next(args);
        if (interleave && context.commandName === 'PutItemCommand') {
          interleave = false;
          await other.delete('users', key); // B
          await other.put('users', { ...key, m: { x: 2 }, who: 'C' }); // C
        }
        return out;
      },
      { step: 'initialize', name: 'interleaveAfterPut' },
    );
    const a = stack.cache({}, { dynamoClient: client });
    const written = await a.put('users', { ...key, m: { x: 1 } });
    assert.equal(interleave, false, 'B and C ran between the put and its read-back');
    assert.deepEqual(
      { version: written.version, item: written.item },
      { version: 1, item: { ...key, m: { x: 1 } } },
      "A's answer is the item A wrote",
    );
  });

  // What held: the interleavings below were tried and the protocol kept its guarantees (these pass).

  for (const order of ['restore first', 'store first'] as const) {
    test(`held: a writer DynamoDB refused (restore) and one it accepted end in either order (${order}): the accepted write is what reads return`, async () => {
      const server = await RedisServer.start();
      try {
        const env = { CACHE_NODES: server.url, CACHE_WRITE_POLICY: 'strict' };
        const key = { userId: `restore-race-${order.split(' ')[0]}` };
        const base = stack.cache(env);
        await base.put('users', { ...key, n: 1 });
        assert.equal((await base.get('users', key)).cache, 'hit');
        const [aBegun, bEnd] = [new Gate(), new Gate()];
        const a = stack.cache(env, { hooks: { beforeCommit: () => aBegun.hold() } });
        const b = stack.cache(env, { hooks: { afterCommit: () => bEnd.hold() } });
        // A begins (sets n=1 aside), B begins and commits n=2, then A's If-Match 1 is refused.
        const refused = a.put('users', { ...key, n: 99 }, { ifVersion: 1 }).then(
          () => 'written',
          (err: Error) => err.name,
        );
        await aBegun.reached;
        const accepted = b.put('users', { ...key, n: 2 });
        await bEnd.reached;
        if (order === 'restore first') {
          aBegun.open();
          assert.equal(await refused, 'VersionMismatchError');
          bEnd.open();
        } else {
          bEnd.open();
          await accepted;
          aBegun.open();
          assert.equal(await refused, 'VersionMismatchError');
        }
        assert.equal((await accepted).version, 2);
        for (const reader of [stack.cache(env), base]) {
          await reader.get('users', key);
          assert.equal((await reader.get('users', key)).item?.n, 2);
        }
      } finally {
        await server.stop();
      }
    });
  }

  test('held: a lease granted before a restart from a dump fills an entry tagged with the old epoch, which the new epoch never trusts', async () => {
    // The lease is in the dump; a write after the dump removed it from the live node only. The
    // restarted node has the old lease back, nobody removes it, and the slow filler's FILL matches
    // it: only the epoch tag (and not the settle, which FILL does not check) keeps n=1 from being hit.
    const server = await RedisServer.start();
    try {
      const env = { CACHE_NODES: server.url, CACHE_WRITE_POLICY: 'strict' };
      const key = { userId: 'lease-in-dump' };
      const writer = stack.cache(env);
      await writer.put('users', { ...key, n: 1 });
      await writer.invalidate(writer.resolve('users', key)); // no entry: the next read misses
      const fill = new Gate();
      const slow = stack.cache(env, { hooks: { beforeFill: () => fill.hold() } });
      const slowRead = slow.get('users', key);
      await fill.reached; // lease granted on E1, n=1 read
      const oldTag = epochTag(await server.runId());
      await server.save();
      assert.equal((await writer.put('users', { ...key, n: 2 })).version, 2);
      await server.kill();
      await server.startAgain(); // E2, with the dump's lease
      const rk = slow.resolve('users', key);
      await eventually('the slow reader is connected to E2', async () => slow.nodeFor(rk)!.client.status === 'ready');
      fill.open();
      assert.equal((await slowRead).item?.n, 1);
      const admin = server.client();
      try {
        const d = (await admin.hget(rk.redisKey, 'd')) ?? '';
        assert.ok(d.startsWith(oldTag), 'the old lease matched: the fill stored n=1 under the old epoch tag');
      } finally {
        await admin.quit();
      }
      const later = stack.cache(env);
      await later.get('users', key);
      assert.equal((await later.get('users', key)).item?.n, 2);
    } finally {
      await server.stop();
    }
  });

  test('held (available): past maxmemory under noeviction a write that could not begin leaves the old entry only until its stream record, whose INVALIDATE deletes before it fails', async () => {
    const server = await RedisServer.start();
    const admin = server.client();
    try {
      const env = { CACHE_NODES: server.url };
      const key = { userId: 'oom-available' };
      const writer = stack.cache(env);
      const reader = stack.cache(env);
      await writer.put('users', { ...key, n: 1 });
      assert.equal((await reader.get('users', key)).cache, 'hit');
      await pastMaxmemory(admin);
      assert.equal((await writer.put('users', { ...key, n: 2 })).version, 2, 'available: committed without a begin');
      assert.equal((await reader.get('users', key)).item?.n, 1, 'stale until the stream record (the documented bound)');
      const rk = writer.resolve('users', key);
      const consumer = stack.cache(env);
      await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, '300')]);
      assert.equal(await admin.hexists(rk.redisKey, 'd'), 0, "the record's INVALIDATE deleted the entry, although its restamp failed");
      assert.equal((await reader.get('users', key)).item?.n, 2);
    } finally {
      await admin.quit().catch(() => undefined);
      await server.stop();
    }
  });
});
