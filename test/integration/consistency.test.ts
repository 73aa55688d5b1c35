/**
 * Consistency under concurrency and faults (issue 4): the history checker's definitions on small
 * hand-made histories, a short run of `npm run consistency` with every fault once, and the
 * violations the runs found, each as a deterministic reproduction.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { check } from '../../consistency/checker.ts';
import { runConsistency } from '../../consistency/harness.ts';
import { ABSENT, ALL_FAULTS, type FaultWindow, type OpRecord } from '../../consistency/history.ts';
import { TcpProxy as MovableEndpoint } from '../helpers/tcp-proxy.ts';
import { formatReport } from '../../consistency/report.ts';
import { Gate, startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import type { CacheNode } from '../../lib/cache/node.ts';

// ---------------------------------------------------------------------------------------------
// The checker's definitions
// ---------------------------------------------------------------------------------------------

let opSeq = 0;
function rec(r: Partial<OpRecord> & Pick<OpRecord, 'kind' | 'value' | 'start' | 'end'>): OpRecord {
  return { op: ++opSeq, client: 'w0', key: 'u/k', hot: true, outcome: 'ok', dynamoMs: 0, dynamoCalls: 0, dynamoReads: 0, ...r };
}
const put = (value: string, start: number, end: number, more: Partial<OpRecord> = {}): OpRecord =>
  rec({ kind: 'put', value, start, end, ...more });
const get = (value: string, start: number, end: number, more: Partial<OpRecord> = {}): OpRecord =>
  rec({ kind: 'get', value, start, end, client: 'w1', source: 'hit', ...more });

describe('consistency checker', () => {
  test('a read of a value superseded by a write acknowledged before the read started is stale', () => {
    const r = check([put('a', 0, 10), put('b', 20, 30), get('a', 40, 41)], [], []);
    assert.equal(r.staleReads, 1);
    assert.equal(r.staleExamples[0]?.superseding.value, 'b');
    assert.equal(r.staleExamples[0]?.ageMs, 10);
  });

  test('a read concurrent with the newer write, or of a write that overlapped it, is not stale', () => {
    assert.equal(check([put('a', 0, 10), put('b', 20, 30), get('a', 25, 35)], [], []).staleReads, 0);
    // b started before a ended: the two are concurrent, either may be last.
    assert.equal(check([put('a', 0, 10), put('b', 5, 30), get('a', 40, 41)], [], []).staleReads, 0);
  });

  test('not found after an acknowledged put is stale; after a delete it is not', () => {
    assert.equal(check([put('a', 0, 10), get(ABSENT, 20, 21)], [], []).staleReads, 1);
    assert.equal(
      check([put('a', 0, 10), rec({ kind: 'delete', value: ABSENT, start: 12, end: 15 }), get(ABSENT, 20, 21)], [], []).staleReads,
      0,
    );
    assert.equal(check([get(ABSENT, 0, 1)], [], []).staleReads, 0, 'the initial absence');
  });

  test('an uncertain write may appear at any time; a refused or condition-failed one never', () => {
    const uncertain = put('u', 0, 10, { outcome: 'error', error: 'StoreUnavailable' });
    const r = check([put('a', 0, 5), uncertain, put('b', 20, 30), get('u', 40, 41)], [], []);
    assert.equal(r.staleReads, 0);
    assert.equal(r.phantomReads, 0);
    assert.equal(r.reads.ofUncertainWrites, 1);
    const refused = put('x', 0, 10, { outcome: 'rejected', error: 'CacheUnavailable' });
    assert.equal(check([refused, get('x', 20, 21)], [], []).phantomReads, 1);
    const injectedBefore = put('y', 0, 10, { outcome: 'error', error: 'StoreUnavailable', injected: 'before' });
    assert.equal(check([injectedBefore, get('y', 20, 21)], [], []).phantomReads, 1);
    // Injected after the answer: it committed, so it can also be superseded.
    const injectedAfter = put('z', 0, 10, { outcome: 'error', error: 'StoreUnavailable', injected: 'after' });
    assert.equal(check([injectedAfter, put('b', 20, 30), get('z', 40, 41)], [], []).staleReads, 1);
  });

  test('a value never written, or written after the read ended, is a phantom', () => {
    assert.equal(check([get('nobody', 0, 1)], [], []).phantomReads, 1);
    assert.equal(check([get('a', 0, 1), put('a', 5, 10)], [], []).phantomReads, 1);
  });

  test('a value superseded only by an out-of-band write is out-of-band staleness, not a stale read', () => {
    const r = check([put('a', 0, 10), rec({ kind: 'oobPut', client: 'oob', value: 'o', start: 20, end: 30 }), get('a', 130, 131)], [], []);
    assert.equal(r.staleReads, 0);
    assert.equal(r.outOfBandStaleReads.count, 1);
    assert.equal(r.outOfBandStaleReads.ageMs.max, 100);
  });

  test('available policy: staleness from a write that could not reach its node is the documented bound, counted apart', () => {
    const history = [put('a', 0, 10), put('b', 20, 30, { degraded: true }), get('a', 40, 41)];
    const available = check(history, [], [], { policy: 'available' });
    assert.equal(available.staleReads, 0);
    assert.equal(available.boundedStaleReads.count, 1);
    assert.equal(check(history, [], [], { policy: 'strict' }).staleReads, 1, 'strict claims more');
    // Another acknowledged write that did reach the node makes it a violation under either policy.
    assert.equal(check([...history.slice(0, 2), put('c', 32, 35), get('a', 40, 41)], [], [], { policy: 'available' }).staleReads, 1);
  });

  test('failed requests: strict refusals during cache faults and errors during DynamoDB faults are counted apart', () => {
    const faults: FaultWindow[] = [
      { kind: 'hang', target: 'shard0', start: 100, end: 200 },
      { kind: 'dynamo', target: 'dynamodb', start: 1000, end: 1100 },
    ];
    const r = check(
      [
        put('a', 150, 160, { outcome: 'rejected', error: 'CacheUnavailable' }),
        put('b', 20_000, 20_010, { outcome: 'rejected', error: 'CacheUnavailable' }),
        get('', 1050, 1060, { outcome: 'error', error: 'StoreUnavailable' }),
        get('', 30_000, 30_010, { outcome: 'error', error: 'StoreUnavailable' }),
        rec({ kind: 'update', value: 'c', start: 0, end: 1, outcome: 'rejected', error: 'ItemNotFound' }),
      ],
      faults,
      [],
    );
    assert.equal(r.refusedWrites, 1);
    assert.equal(r.dynamoFaultErrors, 1);
    assert.equal(r.failedRequests, 2);
    assert.deepEqual(r.failedByReason, { 'strict refusal outside any cache fault': 1, StoreUnavailable: 1 });
  });

  describe("latency: a reader that waited on another reader's fill is credited that one DynamoDB read", () => {
    // Command timeout 300 + slack 100: a cache time above 400 ms is over budget.
    const budget = { commandTimeoutMs: 300, latencySlackMs: 100 };
    // A filler (w2, a miss) whose DynamoDB read of u/k took 700 ms; a waiter (w1, a hit of its fill)
    // that found its lease and took 705 ms, none of it in DynamoDB itself.
    const filler = (more: Partial<OpRecord> = {}): OpRecord =>
      get(ABSENT, 1000, 1710, {
        client: 'w2',
        source: 'miss',
        dynamoMs: 700,
        dynamoCalls: 1,
        dynamoReads: 1,
        dynamoReadSpans: [[1005, 1705]],
        ...more,
      });
    const waiter = (more: Partial<OpRecord> = {}): OpRecord => get(ABSENT, 1002, 1707, { client: 'w1', leaseWaits: 12, ...more });
    const latency = (history: OpRecord[]) => check(history, [], [], budget).faultLatencyMs.none;

    test("a hit that waited on a lease and is covered by another operation's read of the same key is not over budget", () => {
      const l = latency([filler(), waiter()]);
      assert.equal(l?.overBudget, 0);
      assert.equal(l?.waitedOnFill, 1);
      // The waiter's cache time: 705 - 0 - the overlap [1005, 1705] = 5 ms; the filler's 710 - 700 = 10.
      assert.equal(l?.maxCacheMs, 10);
    });

    test('the same operation without leaseWaits gets no credit: over budget', () => {
      const l = latency([filler(), waiter({ leaseWaits: undefined })]);
      assert.equal(l?.overBudget, 1);
      assert.equal(l?.waitedOnFill, 0);
      assert.equal(l?.worst?.client, 'w1');
      assert.equal(l?.worst?.waitedMs, 0);
      assert.equal(l?.maxCacheMs, 705);
    });

    test('a span of the same operation gives no credit, a span of another operation of the same client does', () => {
      // The span recorded by the waiter's own operation (same client, same op id).
      const own = waiter();
      const self = latency([own, filler({ client: own.client, op: own.op, start: own.start, end: own.end, dynamoMs: 0 })]);
      assert.equal(self?.overBudget, 1);
      assert.equal(self?.waitedOnFill, 0);
      // Another operation of the same container (containers run several at once) is a different filler.
      const sibling = latency([filler({ client: 'w1' }), waiter()]);
      assert.equal(sibling?.overBudget, 0);
      assert.equal(sibling?.waitedOnFill, 1);
    });

    test('a span of a different key gives no credit', () => {
      const l = latency([filler({ key: 'u/other' }), waiter()]);
      assert.equal(l?.overBudget, 1);
      assert.equal(l?.waitedOnFill, 0);
    });

    test('the credit is one DynamoDB call (the largest overlap), not the sum of several', () => {
      // Two fillers in turn (the first one's read failed, it gave its lease back), 400 ms each; the
      // waiter waited for both: 805 ms, of which one call (400) is credited, leaving 405 > 400.
      const first = filler({
        start: 1000,
        end: 1400,
        dynamoMs: 400,
        dynamoReadSpans: [[1000, 1400]],
        outcome: 'error',
        error: 'StoreUnavailable',
      });
      const second = filler({ client: 'w3', start: 1400, end: 1805, dynamoMs: 400, dynamoReadSpans: [[1402, 1802]] });
      const l = latency([first, second, waiter({ start: 1000, end: 1805 })]);
      assert.equal(l?.waitedOnFill, 1);
      assert.equal(l?.overBudget, 1);
      assert.equal(l?.worst?.client, 'w1');
      assert.equal(l?.worst?.waitedMs, 400);
      assert.equal(l?.maxCacheMs, 405);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// A short run: every fault once
// ---------------------------------------------------------------------------------------------

describe('consistency run', () => {
  test('30 s, strict policy, every fault once: no stale read, no phantom read, no failed request', { timeout: 120_000 }, async () => {
    // 500 ms command timeout: on a shared CI machine a starved container is not a dead node.
    const result = await runConsistency({
      seconds: 30,
      seed: 42,
      policy: 'strict',
      faults: [...ALL_FAULTS],
      commandTimeoutMs: 500,
      log: () => {},
    });
    console.log(formatReport(result));
    for (const kind of ALL_FAULTS) assert.ok((result.faults[kind] ?? 0) >= 1, `fault ${kind} was injected`);
    assert.ok(result.operations.total > 1000, `enough operations: ${result.operations.total}`);
    assert.equal(result.staleReads, 0, `stale reads: ${JSON.stringify(result.staleExamples.slice(0, 3))}`);
    assert.equal(result.phantomReads, 0, `phantom reads: ${JSON.stringify(result.phantomExamples.slice(0, 3))}`);
    assert.equal(result.failedRequests, 0, `failed requests: ${JSON.stringify(result.failedExamples.slice(0, 3))}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Violations the runs found, as deterministic reproductions (they fail until the library is fixed)
// ---------------------------------------------------------------------------------------------

async function until(what: string, check: () => boolean, boundMs = 10_000): Promise<void> {
  const end = Date.now() + boundMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('violations found by the consistency runs', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  test('G1 (strict): a write acknowledged across a failover that lost its fence, its end-write unable to reach the new primary, is what later reads return', async () => {
    const primary = await RedisServer.start();
    const replica = await RedisServer.startReplicaOf(primary);
    // Each container resolves the shard's primary endpoint on its own (DNS): after the failover the
    // reader's has moved, the writer's not yet.
    const writerEndpoint = await MovableEndpoint.start(primary.port);
    const readerEndpoint = await MovableEndpoint.start(primary.port);
    const caches: ItemCache[] = [];
    try {
      const key = { userId: 'fence-lost-in-failover' };
      const gate = new Gate();
      let held = false;
      const writer = stack.cache(
        { CACHE_NODES: writerEndpoint.url, CACHE_WRITE_POLICY: 'strict' },
        {
          hooks: {
            beforeCommit: async () => {
              if (held) return;
              held = true;
              await gate.hold();
            },
          },
        },
      );
      const reader = stack.cache({ CACHE_NODES: readerEndpoint.url, CACHE_WRITE_POLICY: 'strict' });
      caches.push(writer, reader);
      await reader.put('users', { ...key, v: 'old' });
      assert.equal((await reader.get('users', key)).cache, 'hit');
      const rk = reader.resolve('users', key);

      // 1. The writer begins on the primary (entry dropped, fence raised) and is slow to commit.
      const pending = writer.put('users', { ...key, v: 'new' });
      await gate.reached;
      // 2. Failover: the primary dies, the replica is promoted; the reader's endpoint moves.
      await primary.kill();
      await replica.promote();
      readerEndpoint.moveTo(replica.port);
      const readerNode = reader.nodeFor(rk) as CacheNode;
      await until('the reader trusts the promoted replica (new epoch sealed: flushed, the fence with it)', () => readerNode.readable);
      // 3. The reader misses, leases (no fence any more), reads the old item from DynamoDB and fills it.
      const during = await reader.get('users', key);
      assert.equal(during.item?.v, 'old');
      // 4. The writer commits; its end-write cannot reach the shard (its endpoint still names the
      //    dead primary), so it only marks the key dirty — and acknowledges the write.
      gate.open();
      assert.equal((await pending).version, 2, 'the write was acknowledged');
      // 5. G1: a read that starts after the acknowledgement must not return the older value.
      const later = await reader.get('users', key);
      assert.equal(later.item?.v, 'new', `read after the acknowledged write returned '${String(later.item?.v)}' (${later.cache})`);
    } finally {
      await Promise.all(caches.map((c) => c.close().catch(() => {})));
      await writerEndpoint.stop();
      await readerEndpoint.stop();
      await replica.stop();
      await primary.stop();
    }
  });

  test('(c) concurrent puts to one item from several containers all succeed while DynamoDB is healthy', async () => {
    const containers = Array.from({ length: 8 }, () => stack.cache());
    const settled = await Promise.allSettled(
      containers.flatMap((c, i) => [0, 1].map((j) => c.put('users', { userId: 'contended', v: `${i}-${j}` }))),
    );
    const failed = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    assert.equal(failed.length, 0, `${failed.length} of ${settled.length} puts failed: ${String(failed[0]?.reason)}`);
  });
});
