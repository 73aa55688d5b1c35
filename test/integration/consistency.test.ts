/**
 * Consistency under concurrency and faults (issue 4): the history checker's definitions on small
 * hand-made histories, a short run of `npm run consistency` with every designed fault once, a short
 * run of the fault classes issue 11 added (stalls, maxmemory under each eviction policy, two shard
 * maps then a rollback, DynamoDB black-holed), and the violations the runs found, each as a
 * deterministic reproduction. The checker's rule for strict refusals is tested in
 * test/unit/strict-refusal.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { check } from '../../consistency/checker.ts';
import { runConsistency, type RunResult } from '../../consistency/harness.ts';
import { ABSENT, DESIGNED_FAULTS, NEW_FAULTS, type FaultWindow, type OpRecord } from '../../consistency/history.ts';
import { MAXMEMORY_POLICIES } from '../../consistency/faults.ts';
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

  test('a refusal after an SDK retry (the library: an earlier attempt may have been applied) is uncertain, not a phantom', () => {
    // An update whose first attempt committed but whose answer was lost; the retry found the item gone
    // (a delete in between) and reported not-found with nothingWritten false.
    const retried = rec({ kind: 'update', value: 'r', start: 0, end: 10, outcome: 'rejected', error: 'ItemNotFound', maybeWritten: true });
    const r = check([retried, get('r', 20, 21)], [], []);
    assert.equal(r.phantomReads, 0);
    assert.equal(r.writes.uncertain, 1);
    // Without the library's word it stays "did not commit".
    const refused = rec({ kind: 'update', value: 's', start: 0, end: 10, outcome: 'rejected', error: 'ItemNotFound' });
    assert.equal(check([refused, get('s', 20, 21)], [], []).phantomReads, 1);
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
      { kind: 'hang', target: 'shard0', node: 'shard0', start: 100, end: 200, answeredAt: 210 },
      { kind: 'dynamo', target: 'dynamodb', start: 1000, end: 1100 },
    ];
    const r = check(
      [
        put('a', 150, 160, { outcome: 'rejected', error: 'CacheUnavailable', node: 'shard0' }),
        put('b', 20_000, 20_010, { outcome: 'rejected', error: 'CacheUnavailable', node: 'shard0' }),
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
    assert.deepEqual(r.failedByReason, { 'strict refusal after its node answered again (hang)': 1, StoreUnavailable: 1 });
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
  // One run of every designed fault, shared by the two tests below. 500 ms command timeout: on a
  // shared CI machine a starved container is not a dead node. A 1 s check interval: a node marked
  // down comes back within the fault's slot.
  let designed: Promise<RunResult> | undefined;
  const designedRun = (): Promise<RunResult> =>
    (designed ??= runConsistency({
      seconds: 24,
      seed: 42,
      policy: 'strict',
      faults: [...DESIGNED_FAULTS],
      commandTimeoutMs: 500,
      checkIntervalSeconds: 1,
      log: () => {},
    }).then((result) => {
      console.log(formatReport(result));
      return result;
    }));

  test('24 s, strict policy, every designed fault once: no stale read, no phantom read, no failed request other than a refusal', {
    timeout: 120_000,
  }, async () => {
    const result = await designedRun();
    for (const kind of DESIGNED_FAULTS) assert.ok((result.faults[kind] ?? 0) >= 1, `fault ${kind} was injected`);
    assert.ok(
      result.operations.total > 500,
      `enough operations (about 5,000 on a quiet machine, under 1,000 at a load of 15): ${result.operations.total}`,
    );
    assert.equal(result.staleReads, 0, `stale reads: ${JSON.stringify(result.staleExamples.slice(0, 3))}`);
    assert.equal(result.phantomReads, 0, `phantom reads: ${JSON.stringify(result.phantomExamples.slice(0, 3))}`);
    // The live inspector, sampling every record the consumer applied, agrees: nothing it checked was stale.
    assert.ok(result.inspector.checked > 50, `inspector samples checked: ${result.inspector.checked}`);
    assert.deepEqual(result.inspector.inconsistencies, []);
    const other = result.failedExamples.filter((e) => e.error !== 'CacheUnavailable');
    assert.equal(result.failedRequests - result.refusalsCountedFailed, 0, `failed requests: ${JSON.stringify(other.slice(0, 3))}`);
  });

  test('strict: no write is refused once its node answers again (excused only until its first answer + one command timeout)', {
    timeout: 120_000,
  }, async () => {
    const result = await designedRun();
    // A refusal while the container itself stood still (a loaded machine) is counted apart (CONSISTENCY.md).
    assert.equal(
      result.refusalsCountedFailed,
      0,
      `refused while the node answered (${result.refusalsStarved} more while their container stood still): ${JSON.stringify(result.failedExamples.slice(0, 3))}`,
    );
  });

  test('the fault classes of issue 11 fire and are measured: stalls, maxmemory, two shard maps then a rollback, DynamoDB black-holed', {
    timeout: 120_000,
  }, async () => {
    // Prepare: a short run of the new classes only, small, recording its history.
    const dir = mkdtempSync(join(tmpdir(), 'consistency-test-'));
    const historyFile = join(dir, 'history.ndjson');
    try {
      // Act
      const result = await runConsistency({
        seconds: 5,
        seed: 11,
        policy: 'strict',
        faults: [...NEW_FAULTS],
        workers: 2,
        concurrency: 2,
        remapContainers: 1,
        commandTimeoutMs: 500,
        historyFile,
        log: () => {},
      });
      console.log(formatReport(result));
      const lines = readFileSync(historyFile, 'utf8').split('\n').filter(Boolean);
      const windows = lines.map((l) => JSON.parse(l) as { fault?: FaultWindow }).flatMap((l) => (l.fault ? [l.fault] : []));
      const records = lines.map((l) => JSON.parse(l) as OpRecord).filter((r) => r.client !== undefined);

      // Assess: every class fired, at the library's default check interval.
      assert.equal(result.options.settings.CACHE_CHECK_INTERVAL_SECONDS, '60');
      for (const kind of NEW_FAULTS) assert.ok((result.faults[kind] ?? 0) >= 1, `fault ${kind} was injected`);
      // Node faults record when their node answered again, after they were lifted.
      const nodeWindows = windows.filter((w) => w.kind === 'stall' || w.kind === 'maxmemory');
      for (const w of nodeWindows) {
        assert.ok(w.node?.startsWith('shard'), `${w.kind} names its node`);
        assert.ok(w.answeredAt !== undefined && w.answeredAt >= w.end, `${w.kind} on ${w.node} answered after it was lifted`);
      }
      for (const w of windows.filter((x) => x.kind === 'stall')) {
        const stalled = Number(w.detail?.stalledMs);
        assert.ok(stalled >= 500 / 3 && stalled <= 2000 / 3, `a stall of ${stalled} ms around the 500 ms command timeout`);
      }
      const pressure = windows.find((w) => w.kind === 'maxmemory');
      assert.ok(
        MAXMEMORY_POLICIES.some((p) => pressure?.target.endsWith(p)),
        `the policy is in the target: ${pressure?.target}`,
      );
      // Both maps' containers served reads, and the checker checked them.
      const remap = windows.find((w) => w.kind === 'remap');
      const remapClients = remap?.clients ?? [];
      assert.ok(
        remapClients.some((c) => c.includes('new')) && remapClients.some((c) => c.includes('old')),
        `remap containers: ${remapClients}`,
      );
      for (const c of remapClients) {
        assert.ok(
          records.some((r) => r.client === c && r.outcome === 'ok' && (r.kind === 'get' || r.kind === 'batchGet')),
          `container ${c} read`,
        );
      }
      // Writes name the node their container's map chose; refusals are judged by it.
      assert.ok(records.filter((r) => r.kind === 'put').every((r) => r.node?.startsWith('shard')));
      // The black hole held operations (their time is DynamoDB's, not the cache's).
      assert.ok((result.faultLatencyMs.blackhole?.operations ?? 0) > 0, 'operations ran into the black hole');
      // Per class counts are reported; phantoms are never expected, nor stale reads (two live maps
      // included: defect 3). Refusals counted failed are reported, not asserted (a short run on a
      // shared machine: a starved container's timeouts).
      for (const kind of NEW_FAULTS) assert.ok((result.byFault[kind]?.windows ?? 0) >= 1);
      assert.equal(result.phantomReads, 0, `phantom reads: ${JSON.stringify(result.phantomExamples.slice(0, 3))}`);
      assert.equal(result.staleReads, 0, `stale reads: ${JSON.stringify(result.staleExamples.slice(0, 3))}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('consistency run, cluster mode', () => {
  test('a short run on a local cluster: a primary failed over under load, slots migrated; no stale or phantom read', {
    timeout: 120_000,
  }, async () => {
    // Prepare: the two classes only cluster mode has, small, recording its history.
    const dir = mkdtempSync(join(tmpdir(), 'consistency-cluster-'));
    const historyFile = join(dir, 'history.ndjson');
    try {
      // Act
      const result = await runConsistency({
        mode: 'cluster',
        seconds: 5,
        seed: 5,
        policy: 'strict',
        faults: ['failover', 'migrate'],
        workers: 2,
        concurrency: 2,
        commandTimeoutMs: 500,
        historyFile,
        log: () => {},
      });
      console.log(formatReport(result));
      const lines = readFileSync(historyFile, 'utf8').split('\n').filter(Boolean);
      const windows = lines.map((l) => JSON.parse(l) as { fault?: FaultWindow }).flatMap((l) => (l.fault ? [l.fault] : []));
      const records = lines.map((l) => JSON.parse(l) as OpRecord).filter((r) => r.client !== undefined);

      // Assess: both fired; the failover names its pair and a new primary; slots moved.
      const failover = windows.find((w) => w.kind === 'failover');
      assert.ok(failover?.node?.startsWith('shard'), `the failover names its primary's pair: ${failover?.node}`);
      assert.notEqual(failover?.detail?.newPrimary, failover?.detail?.oldPrimary);
      const migrate = windows.find((w) => w.kind === 'migrate');
      assert.ok(((migrate?.detail?.slots as number[] | undefined) ?? []).length > 0, `slots migrated: ${JSON.stringify(migrate?.detail)}`);
      // Writes name the pair of the primary their key went to, as the failover window names it.
      assert.ok(records.filter((r) => r.kind === 'put').every((r) => r.node?.startsWith('shard')));
      assert.ok(result.operations.total > 200, `operations: ${result.operations.total}`);
      assert.equal(result.phantomReads, 0, `phantom reads: ${JSON.stringify(result.phantomExamples.slice(0, 3))}`);
      assert.equal(result.staleReads, 0, `stale reads: ${JSON.stringify(result.staleExamples.slice(0, 3))}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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
