/**
 * G3, R6 and R9: nodes that hang, die, come back with or without their data, and a promoted
 * replica. Node health runs on a clock each test drives by hand, so no assertion depends on time.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { Gate, manualClock, startStack, type TestStack } from '../helpers/stack.ts';
import { endSettle, plantEntry, streamRecord } from '../helpers/faults.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';
import { CacheUnavailableError, invalidateStreamRecords } from '../../lib/index.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import type { CacheNode } from '../../lib/cache/node.ts';
import type { ResolvedKey } from '../../lib/keys.ts';
import { logsDuring } from '../helpers/capture-logs.ts';

/** Resolves at the client's next 'ready': register it before the connection is reset. */
function nextReady(node: CacheNode): Promise<void> {
  return new Promise((resolve) => node.client.once('ready', () => resolve()));
}

async function waitConnected(node: CacheNode): Promise<void> {
  // ioredis reconnects on its own schedule; wait for the event, not for a time.
  if (node.client.status === 'ready') return;
  await new Promise<void>((resolve) => node.client.once('ready', () => resolve()));
}

const INTERVAL = { CACHE_CHECK_INTERVAL_SECONDS: '10', CACHE_START_CYCLES: '2' };

describe('node faults', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => stack.stop());

  const serverOf = (cache: ItemCache, rk: ResolvedKey): RedisServer => stack.serverOf(cache, rk);

  test('G3: a hung node costs a request at most the command timeout and is marked down; the request is served', async () => {
    const clock = manualClock();
    const c = stack.cache(INTERVAL, { clock: clock.now });
    const key = { userId: 'g3' };
    await c.put('users', { ...key, v: 1 });
    const rk = c.resolve('users', key);
    const server = serverOf(c, rk);
    server.pause();
    try {
      const r = await c.get('users', key);
      assert.equal(r.item?.v, 1);
      assert.equal(r.cache, 'bypass');
      assert.equal(c.nodeFor(rk)!.status, 'down');
      const again = await c.get('users', key);
      assert.equal(again.cache, 'bypass', 'a down node is not asked again before its check interval');
      assert.equal(c.nodeFor(rk)!.probing, undefined);
      // Writes still succeed under the default (available) policy.
      const w = await c.put('users', { ...key, v: 2 });
      assert.equal(w.version, 2);
    } finally {
      server.resume();
    }
  });

  test('node state machine: down → probed each interval → starting (write-only) for start cycles → up', async () => {
    const clock = manualClock();
    const c = stack.cache(INTERVAL, { clock: clock.now });
    const key = { userId: 'sm' };
    await c.put('users', { ...key, v: 1 });
    const rk = c.resolve('users', key);
    const node = c.nodeFor(rk)!;
    const server = serverOf(c, rk);
    assert.equal((await c.get('users', key)).cache, 'hit');
    await server.kill();
    assert.equal((await c.get('users', key)).cache, 'bypass');
    assert.equal(node.health().status, 'down');
    clock.advance(5_000);
    void node.status;
    assert.equal(node.probing, undefined, 'not probed before the interval');
    clock.advance(5_000);
    void node.status; // due: the probe starts, and fails (the server is gone)
    assert.notEqual(node.probing, undefined);
    assert.equal(await node.probing, false);
    assert.equal(node.status, 'down');
    await server.startAgain(); // empty: killed without a save
    await waitConnected(node);
    clock.advance(10_000);
    void node.status;
    assert.equal(await node.probing, true);
    assert.equal(node.status, 'starting');
    // starting: fills go to the node, reads do not trust it
    assert.equal((await c.get('users', key)).cache, 'miss');
    assert.equal((await c.get('users', key)).cache, 'miss');
    clock.advance(19_999);
    assert.equal(node.status, 'starting');
    clock.advance(1);
    assert.equal(node.status, 'up');
    // A new epoch of a node this container knew before settles for the writers' fence time: a writer
    // that began before the restart may still be in flight, so nothing is filled yet.
    assert.equal((await c.get('users', key)).cache, 'miss');
    assert.equal(await node.client.hget(rk.redisKey, 'd'), null);
    await endSettle(node); // the fence time has passed
    assert.equal((await c.get('users', key)).cache, 'miss');
    const r = await c.get('users', key);
    assert.equal(r.cache, 'hit');
    assert.equal(r.item?.v, 1);
  });

  test('R6: a write whose node is unreachable commits, logs and keeps its key dirty; the stream retries; no read trusts the old entry once repaired', async () => {
    const probe = stack.cache();
    const key = { userId: 'r6' };
    const rk = probe.resolve('users', key);
    const server = serverOf(probe, rk);
    // The writer and the stream consumer reach this node through a proxy that can be cut.
    const proxy = await TcpProxy.start(server.port);
    const viaProxy = { ...INTERVAL, CACHE_NODES: stack.env.CACHE_NODES.replace(server.url, proxy.url) };
    const clock = manualClock();
    const writer = stack.cache(viaProxy, { clock: clock.now });
    const consumer = stack.cache(viaProxy, { clock: clock.now });
    // The writer's and the consumer's views of the live shard maps are taken now (their clock stands
    // still: never again), before the other container's map appears: they never fence through its
    // route to the node (lib/cache/maps.ts).
    await writer.shards.view?.refresh();
    await consumer.shards.view?.refresh();
    const other = stack.cache(INTERVAL); // another container, which keeps reaching the node
    try {
      await writer.put('users', { ...key, v: 'old' });
      assert.equal((await other.get('users', key)).cache, 'hit');
      const seq = '200';
      proxy.cut();
      const { result, logs } = await logsDuring(() => writer.put('users', { ...key, v: 'new' }));
      assert.equal(result.version, 2, 'the write committed and was acknowledged');
      const dirty = logs.find((l) => l.message === 'CACHE_DIRTY_DATA');
      assert.ok(dirty, 'the dirty key was logged');
      assert.equal(dirty.level, 'ERROR');
      assert.equal(dirty.itemKey, rk.redisKey);
      assert.equal(dirty.cacheNode, proxy.url);
      assert.equal(writer.nodeFor(rk)!.dirty.has(rk.redisKey), true);
      assert.equal((await writer.get('users', key)).item?.v, 'new', 'the writer itself reads around its down node');
      // The stream record cannot be applied either: reported, so Lambda retries it.
      const failed = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, seq)]);
      assert.deepEqual(failed.batchItemFailures, [{ itemIdentifier: seq }]);
      // G1's documented bound under the available policy: until a repair lands, a container that
      // still reaches the node reads the old entry.
      assert.equal((await other.get('users', key)).item?.v, 'old');
      const consumerBack = nextReady(consumer.nodeFor(rk)!);
      const writerBack = nextReady(writer.nodeFor(rk)!);
      proxy.heal();
      await consumerBack;
      // Lambda's retry of the record: the consumer probes the node itself and applies it.
      clock.advance(1_000);
      const retried = await invalidateStreamRecords(consumer, [streamRecord(consumer, rk, seq)]);
      assert.deepEqual(retried.batchItemFailures, []);
      assert.equal((await other.get('users', key)).item?.v, 'new');
      // The writer's own recovery repairs its dirty key before it trusts the node again.
      await plantEntry(other, rk, '{"userId":{"S":"r6"},"v":{"S":"planted-stale"}}');
      const node = writer.nodeFor(rk)!;
      await writerBack; // its connection was reset by the heal, too
      clock.advance(10_000);
      void node.status;
      assert.equal(await node.probing, true);
      assert.equal(node.dirty.size, 0);
      assert.equal(await node.client.hget(rk.redisKey, 'd'), null, 'the repair invalidated the dirty key');
      assert.equal((await writer.get('users', key)).item?.v, 'new');
    } finally {
      await proxy.stop();
    }
  });

  test('strict policy: a write whose invalidation cannot reach its node is refused fast, nothing committed', async () => {
    const c = stack.cache({ ...INTERVAL, CACHE_WRITE_POLICY: 'strict' });
    const key = { userId: 'strict' };
    await c.put('users', { ...key, v: 'before' });
    const rk = c.resolve('users', key);
    const server = serverOf(c, rk);
    server.pause();
    try {
      await assert.rejects(c.put('users', { ...key, v: 'after' }), CacheUnavailableError);
      await assert.rejects(c.update('users', key, { set: { v: 'after' } }), CacheUnavailableError);
      await assert.rejects(c.delete('users', key), CacheUnavailableError);
    } finally {
      server.resume();
    }
    const raw = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: 'strict' } }, ConsistentRead: true }),
    );
    assert.equal(raw.Item?.v?.S, 'before');
    assert.equal(raw.Item?._version?.N, '1');
  });

  test('strict policy: when the end of a write cannot reach the node, its fence keeps every container off the old value', async () => {
    const c0 = stack.cache();
    const key = { userId: 'strict-end' };
    await c0.put('users', { ...key, v: 'old' });
    const rk = c0.resolve('users', key);
    const gate = new Gate();
    let held = false;
    const writer = stack.cache(
      { ...INTERVAL, CACHE_WRITE_POLICY: 'strict' },
      {
        hooks: {
          afterCommit: async (k) => {
            if (k === rk.redisKey && !held) {
              held = true;
              await gate.hold();
            }
          },
        },
      },
    );
    const other = stack.cache();
    const pending = writer.put('users', { ...key, v: 'new' });
    await gate.reached; // begun (entry dropped, fence up) and committed in DynamoDB
    // The writer loses its connection: its end-write never reaches the node, which keeps its state.
    // (A paused server would still execute the end-write from its socket buffer once resumed.)
    writer.nodeFor(rk)!.client.disconnect();
    gate.open();
    const w = await pending;
    assert.equal(w.version, 2, 'the committed write is acknowledged');
    assert.equal(writer.nodeFor(rk)!.dirty.has(rk.redisKey), true);
    // Another container reads through the node: no entry, and no fill while the fence holds.
    const r1 = await other.get('users', key);
    assert.equal(r1.item?.v, 'new');
    assert.equal(r1.cache, 'miss');
    assert.equal(await other.nodeFor(rk)!.client.hget(rk.redisKey, 'd'), null, 'nothing filled under the fence');
  });

  test('R9: a node restarted with its old data (new run_id) is never trusted with it: its entries carry the old epoch, nothing is flushed', async () => {
    const clock = manualClock();
    const writer = stack.cache(INTERVAL, { clock: clock.now });
    const other = stack.cache(INTERVAL);
    const key = { userId: 'r9-rdb' };
    await writer.put('users', { ...key, v: 'old' });
    const rk = writer.resolve('users', key);
    assert.equal((await other.get('users', key)).cache, 'hit');
    const server = serverOf(writer, rk);
    const runId = await server.runId();
    await server.save(); // the dump holds the 'old' entry
    await server.kill();
    await writer.put('users', { ...key, v: 'new' }); // node dead: committed, key dirty
    await server.startAgain(); // back with the dump: the 'old' entry, a new run_id
    assert.notEqual(await server.runId(), runId);
    // The other container never failed a command; it reconnects and seals the new epoch.
    await waitConnected(other.nodeFor(rk)!);
    const r = await other.get('users', key);
    assert.equal(r.item?.v, 'new');
    assert.equal(r.cache, 'miss');
    // The old entry is still on the node, tagged with the old epoch: no client trusts it, none flushed it.
    assert.ok((await other.nodeFor(rk)!.client.hget(rk.redisKey, 'd'))?.startsWith(runId.slice(0, 12)));
    // The node came back with data: it settles (no fills) for the writers' fence time, then fills again.
    assert.equal(other.nodeFor(rk)!.health().status, 'settling');
    assert.equal((await other.get('users', key)).cache, 'miss');
    await endSettle(other.nodeFor(rk)!); // the fence time has passed
    await other.get('users', key);
    const again = await other.get('users', key);
    assert.equal(again.item?.v, 'new');
    assert.equal(again.cache, 'hit');
  });

  test('R9: a promoted replica that missed invalidations is never trusted with what it replicated', async () => {
    const primary = await RedisServer.start();
    // Replication runs through a proxy, so the test can make the replica miss what follows.
    const link = await TcpProxy.start(primary.port);
    const replica = await RedisServer.startReplicaOf({ port: link.port });
    try {
      const onPrimary = stack.cache({ CACHE_NODES: primary.url });
      const key = { userId: 'r9-replica' };
      await onPrimary.put('users', { ...key, v: 'old' });
      const rk = onPrimary.resolve('users', key);
      assert.equal((await onPrimary.get('users', key)).cache, 'hit');
      const rc = replica.client();
      for (let i = 0; (await rc.hget(rk.redisKey, 'd')) === null; i++) {
        if (i > 500) throw new Error('replica never received the entry');
        await new Promise((r) => setTimeout(r, 10));
      }
      link.cut(); // asynchronous replication: what the primary does next never reaches the replica
      await onPrimary.put('users', { ...key, v: 'new' });
      await primary.kill();
      link.heal();
      await replica.promote();
      assert.match((await rc.hget(rk.redisKey, 'd')) ?? '', /"old"/, 'the promoted replica holds the entry it never saw invalidated');
      await rc.quit();
      // The failover: clients now reach the promoted replica (as an ElastiCache primary endpoint moves).
      const afterFailover = stack.cache({ CACHE_NODES: replica.url });
      const r = await afterFailover.get('users', key);
      assert.equal(r.item?.v, 'new');
      assert.equal((await afterFailover.get('users', key)).cache, 'miss', 'settling: a writer from before the failover may be in flight');
      await endSettle(afterFailover.nodeFor(rk)!); // the fence time has passed
      await afterFailover.get('users', key);
      const again = await afterFailover.get('users', key);
      assert.equal(again.item?.v, 'new');
      assert.equal(again.cache, 'hit');
    } finally {
      await link.stop();
      await replica.stop();
      await primary.stop();
    }
  });
});
