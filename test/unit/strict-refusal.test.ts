/**
 * The consistency checker's rule for strict refusals (issue 11): a write refused under `strict`
 * (CacheUnavailable) is excused only while a fault on its own node is on, or until that node's first
 * answer after the fault plus one command timeout. A refusal while the node answers, or on a node
 * no fault touched, is a failed request. Made-up histories, no service.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { check, nodeSilentMs, refusalExcuse } from '../../consistency/checker.ts';
import type { FaultWindow, OpRecord } from '../../consistency/history.ts';
import type { NodeSilence } from '../../consistency/network.ts';

const COMMAND_TIMEOUT_MS = 300;

let opSeq = 0;
/** A put refused under strict by client `client`, on node `node`, from `start` to `start + 1`. */
function refusal(node: string | undefined, start: number, client = 'w1'): OpRecord {
  return {
    op: ++opSeq,
    client,
    kind: 'put',
    key: `u/k${opSeq}`,
    hot: false,
    value: `v${opSeq}`,
    start,
    end: start + 1,
    outcome: 'rejected',
    error: 'CacheUnavailable',
    message: 'cache node cannot be invalidated (node is down); nothing was written',
    dynamoMs: 0,
    dynamoCalls: 0,
    dynamoReads: 0,
    ...(node === undefined ? {} : { node }),
  };
}

// A 250 ms stall of shard1 from 1000 to 1250; the node answered a PING again at 1260.
const stall: FaultWindow = { kind: 'stall', target: 'shard1', node: 'shard1', start: 1000, end: 1250, answeredAt: 1260 };

describe('strict refusals: excused only until the node answers again plus one command timeout', () => {
  test('a refusal during the stall, or before the node answered + the command timeout, is excused', () => {
    // Prepare / Act / Assess
    assert.equal(refusalExcuse(refusal('shard1', 1100), [stall], COMMAND_TIMEOUT_MS), stall);
    assert.equal(refusalExcuse(refusal('shard1', 1260 + COMMAND_TIMEOUT_MS - 1), [stall], COMMAND_TIMEOUT_MS), stall);
    // Started just before the window and still running when it began: overlaps it.
    assert.equal(refusalExcuse(refusal('shard1', 999.5), [stall], COMMAND_TIMEOUT_MS), stall);
  });

  test('a refusal after the node answered + the command timeout is not excused', () => {
    assert.equal(refusalExcuse(refusal('shard1', 1260 + COMMAND_TIMEOUT_MS + 1), [stall], COMMAND_TIMEOUT_MS), undefined);
    // The old rule excused anything within 5 s of a cache fault: this one, 2 s after, no longer.
    assert.equal(refusalExcuse(refusal('shard1', 3250), [stall], COMMAND_TIMEOUT_MS), undefined);
    // Before the fault began it is not excused either.
    assert.equal(refusalExcuse(refusal('shard1', 900), [stall], COMMAND_TIMEOUT_MS), undefined);
  });

  test('a refusal on another node, or with no node recorded, is not excused by a fault on shard1', () => {
    assert.equal(refusalExcuse(refusal('shard0', 1100), [stall], COMMAND_TIMEOUT_MS), undefined);
    assert.equal(refusalExcuse(refusal(undefined, 1100), [stall], COMMAND_TIMEOUT_MS), undefined);
  });

  test('a partition excuses only the containers it cut off; a window without answeredAt counts from its end', () => {
    const partition: FaultWindow = { kind: 'partition', target: 'w0↛shard1', node: 'shard1', clients: ['w0'], start: 1000, end: 2000 };
    assert.equal(refusalExcuse(refusal('shard1', 1500, 'w0'), [partition], COMMAND_TIMEOUT_MS), partition);
    assert.equal(refusalExcuse(refusal('shard1', 1500, 'w2'), [partition], COMMAND_TIMEOUT_MS), undefined);
    assert.equal(refusalExcuse(refusal('shard1', 2000 + COMMAND_TIMEOUT_MS - 1, 'w0'), [partition], COMMAND_TIMEOUT_MS), partition);
    assert.equal(refusalExcuse(refusal('shard1', 2000 + COMMAND_TIMEOUT_MS + 1, 'w0'), [partition], COMMAND_TIMEOUT_MS), undefined);
  });

  test("a partition also excuses another container's refusal by the address it cut (the node under w0's map), not one by the node's own address", () => {
    // Prepare: w0 reaches shard1 through a proxy on :44825, cut from 1000 to 2000; shard1's own address is :37655.
    const partition: FaultWindow = {
      kind: 'partition',
      target: 'w0↛shard1',
      node: 'shard1',
      clients: ['w0'],
      address: 'redis://127.0.0.1:44825',
      start: 1000,
      end: 2000,
    };
    const byProxy = {
      ...refusal('shard1', 1500, 'w3'),
      message:
        'cache node redis://127.0.0.1:44825 cannot be invalidated (no answer from redis://127.0.0.1:44825 within 300 ms); nothing was written',
    };
    const byOwnAddress = {
      ...refusal('shard1', 1500, 'w3'),
      message:
        'cache node redis://127.0.0.1:37655 cannot be invalidated (no answer from redis://127.0.0.1:37655 within 300 ms); nothing was written',
    };
    // Act / Assess
    assert.equal(refusalExcuse(byProxy, [partition], COMMAND_TIMEOUT_MS), partition);
    assert.equal(refusalExcuse(byOwnAddress, [partition], COMMAND_TIMEOUT_MS), undefined);
    assert.equal(
      refusalExcuse(
        { ...byProxy, start: 2000 + COMMAND_TIMEOUT_MS + 1, end: 2000 + COMMAND_TIMEOUT_MS + 2 },
        [partition],
        COMMAND_TIMEOUT_MS,
      ),
      undefined,
    );
    const r = check([byProxy, byOwnAddress, refusal('shard1', 1500, 'w0')], [partition], [], {
      policy: 'strict',
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
    });
    assert.equal(r.refusedWrites, 2);
    assert.equal(r.refusalsAtCutAddress, 1, "w3's, not w0's own");
    assert.equal(r.failedRequests, 1);
  });

  test('check(): a refusal in a container the partition did not cut is one with no fault on its node', () => {
    const partition: FaultWindow = { kind: 'partition', target: 'w0↛shard1', node: 'shard1', clients: ['w0'], start: 1000, end: 2000 };
    const r = check([refusal('shard1', 1500, 'w2')], [partition], [], { policy: 'strict', commandTimeoutMs: COMMAND_TIMEOUT_MS });
    assert.deepEqual(r.failedByReason, { 'strict refusal with no fault on its node': 1 });
  });

  test('faults that are not cache faults excuse no refusal', () => {
    const dynamo: FaultWindow = { kind: 'dynamo', target: 'dynamodb', node: 'shard1', start: 1000, end: 2000 };
    const remap: FaultWindow = { kind: 'remap', target: 'CACHE_SHARD_MAP shifted by 5', start: 1000, end: 2000 };
    assert.equal(refusalExcuse(refusal('shard1', 1500), [dynamo, remap], COMMAND_TIMEOUT_MS), undefined);
  });

  test('check(): the excused refusal is a refused write, the others are failed requests with their reason and class', () => {
    // Prepare
    const history = [
      refusal('shard1', 1100), // during the stall: excused
      refusal('shard1', 2000), // 740 ms after the node answered: failed
      refusal('shard0', 1100), // another node, no fault on it: failed
    ];
    // Act
    const r = check(history, [stall], [], { policy: 'strict', commandTimeoutMs: COMMAND_TIMEOUT_MS });
    // Assess
    assert.equal(r.refusedWrites, 1);
    assert.equal(r.refusalsCountedFailed, 2);
    assert.equal(r.failedRequests, 2);
    assert.deepEqual(r.failedByReason, {
      'strict refusal after its node answered again (stall)': 1,
      'strict refusal with no fault on its node': 1,
    });
    assert.equal(r.byFault.stall?.windows, 1);
    assert.equal(r.byFault.stall?.refusalsExcused, 1);
    assert.equal(r.byFault.stall?.refusalsAfterAnswer, 1);
    assert.equal(r.byFault.stall?.failedRequests, 1);
    assert.equal(r.byFault.none?.failedRequests, 1);
  });

  test('check(): a refusal with no excusing fault whose container stood still for a quarter of the command timeout is counted apart, not failed', () => {
    // Prepare: the same refusal on a node no fault touched, its container starved for 74, 75 and 300 ms.
    const history = [
      { ...refusal('shard0', 3000), starvedMs: COMMAND_TIMEOUT_MS / 4 - 1 }, // too short to excuse: failed
      { ...refusal('shard0', 3100), starvedMs: COMMAND_TIMEOUT_MS / 4 }, // starved: apart
      { ...refusal('shard1', 2000), starvedMs: COMMAND_TIMEOUT_MS }, // after its node answered, starved: apart
      refusal('shard0', 3200), // not starved: failed
    ];
    // Act
    const r = check(history, [stall], [], { policy: 'strict', commandTimeoutMs: COMMAND_TIMEOUT_MS });
    // Assess
    assert.equal(r.refusalsStarved, 2);
    assert.equal(r.refusalsCountedFailed, 2);
    assert.equal(r.failedRequests, 2);
    assert.equal(r.refusedWrites, 0, 'a starved refusal is not one a fault excused');
  });

  test("check(): a refusal for want of a replica's acknowledgement is the policy's documented refusal, counted apart (issue 12)", () => {
    // Prepare: the same refusal on a node no fault touched, once for want of a replica, once not.
    const unreplicatedRefusal = {
      ...refusal('shard0', 3000),
      message: "no replica of cache node redis://127.0.0.1:7000 acknowledged the write's invalidation in time; nothing was written",
    };
    // Act
    const r = check([unreplicatedRefusal, refusal('shard0', 3100)], [stall], [], {
      policy: 'strict',
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
    });
    // Assess
    assert.equal(r.refusalsUnreplicated, 1);
    assert.equal(r.refusalsCountedFailed, 1);
    assert.equal(r.failedRequests, 1);
  });

  test('under the available policy a CacheUnavailable is not a refusal: it is a failed request', () => {
    const r = check([refusal('shard1', 1100)], [stall], [], { policy: 'available', commandTimeoutMs: COMMAND_TIMEOUT_MS });
    assert.equal(r.refusedWrites, 0);
    assert.equal(r.failedRequests, 1);
  });

  test('check(): a refusal while its node answered nobody, no fault injected, is still a failed request; its example tells the silence', () => {
    // Prepare: the watch saw shard0 answer nothing from 5000 to 5350 (350 ms, of which its own thread stood
    // still 50 ms); shard4 from 9000 to 9300 while it ran a slow command.
    const silences: NodeSilence[] = [
      { node: 'shard0', start: 5000, end: 5350, ownStallMs: 50 },
      { node: 'shard4', start: 9000, end: 9300, ownStallMs: 0, busyWith: 'FLUSHDB' },
    ];
    const history = [
      refusal('shard0', 5100), // during the silence
      refusal('shard1', 5100), // another node: no silence of its own
    ];
    // Act
    const r = check(history, [], [], { policy: 'strict', commandTimeoutMs: COMMAND_TIMEOUT_MS, nodeSilences: silences });
    // Assess
    assert.equal(r.refusalsCountedFailed, 2);
    assert.equal(r.failedRequests, 2);
    const byNode = Object.fromEntries(r.failedExamples.map((e) => [e.key, e.nodeSilentMs]));
    assert.deepEqual(Object.values(byNode), [300, undefined]);
    assert.equal(nodeSilentMs(refusal('shard0', 4990), silences), 0, 'before the silence');
    // Counted among the silences with no fault: shard0's; not shard4's, busy with a command of its own.
    assert.deepEqual(r.nodeSilences, { count: 1, longestMs: 300, byNode: { shard0: 1 } });
  });

  test('check(): a silence inside an injected fault on its node, or shorter than half the command timeout, is not counted among the silences with no fault', () => {
    const silences: NodeSilence[] = [
      { node: 'shard1', start: 1050, end: 1255, ownStallMs: 0 },
      { node: 'shard2', start: 7000, end: 7149, ownStallMs: 0 },
    ];
    const r = check([], [stall], [], { policy: 'strict', commandTimeoutMs: COMMAND_TIMEOUT_MS, nodeSilences: silences });
    assert.equal(r.nodeSilences.count, 0);
  });
});
