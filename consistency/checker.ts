/**
 * The history checker: from every operation's start, end, key, value and outcome, counts stale
 * reads, phantom reads, failed requests, out-of-band staleness, latency during faults and DynamoDB
 * reads per hot-key invalidation. Pure: a history in, figures out (unit-tested on synthetic histories).
 *
 * Definitions (CONSISTENCY.md repeats them):
 *
 * - A write is *acknowledged* when the call returned normally. A write that was refused or whose
 *   DynamoDB condition failed did not commit. A write that failed otherwise may have committed
 *   ("uncertain"): its value may appear at any time after it started, and it supersedes nothing. So
 *   may a refusal (a version conflict, not found) that came after the SDK retried the request, when
 *   the library says an earlier attempt whose answer was lost may have been applied (`maybeWritten`).
 *   When the harness itself injected the DynamoDB failure it knows which: before sending (not
 *   committed) or after the answer (committed by the time the call ended).
 * - **Stale read**: a read returned value v although a *library* write w' (not v's write) to the same
 *   key started after v's write ended and was acknowledged before the read started. For a read that
 *   found nothing, v's write is the latest-ending delete that may have committed (or the initial
 *   absence). Under the `available` policy a stale read whose every such w' could not reach its node
 *   at begin-write (committed with a dirty key, R6) is the documented bound, counted apart with its
 *   age; any other is a violation.
 * - **Out-of-band staleness**: the same, where only out-of-band writes (straight to DynamoDB) supersede
 *   v. The cache learns of those through the stream (G2), so these are measured as lag, not counted
 *   as stale reads.
 * - **Phantom read**: a read returned a value no write wrote, a value whose write did not commit, or
 *   a value whose write started after the read ended.
 * - **Failed request**: an operation that threw, except: a write refused with CacheUnavailable under
 *   the strict policy while a cache fault on the write's own node was on, or before that node's first
 *   answer after it plus one command timeout (`refusalExcuse`; counted as a refused write; a
 *   partition's only for the containers it cut, and for a refusal by the address it cut), or while
 *   the container stood still (`starvedDuring`; counted apart); any
 *   error in an operation into which the harness injected a DynamoDB fault, or that overlapped a
 *   DynamoDB fault window; an update of an item that does not exist (ItemNotFound, a normal answer).
 * - **Latency budget**: an operation's *cache time* is its latency minus its own time in DynamoDB
 *   calls minus, for a reader that waited on another reader's fill lease (G5), the filler's DynamoDB
 *   read: the largest overlap of the operation with ONE read call of the same key made by another
 *   operation (one DynamoDB call, never a sum). It is over budget above command timeout + slack.
 */
import {
  ABSENT,
  CACHE_FAULTS,
  DYNAMO_FAULTS,
  OOB_KINDS,
  WRITE_KINDS,
  type FaultKind,
  type FaultWindow,
  type OobSample,
  type OpRecord,
} from './history.ts';
import type { NodeSilence } from './network.ts';

export type Policy = 'strict' | 'available';

export interface CheckOptions {
  policy: Policy;
  commandTimeoutMs: number;
  /** Under `available`: how old a stale read explained by an unreachable node may be (G2's lag target). */
  staleBoundMs: number;
  /** After a cache fault is lifted, how long refusals and bypasses are still attributed to it. */
  recoveryGraceMs: number;
  /** Scheduling slack allowed on top of the command timeout in the latency budget. */
  latencySlackMs: number;
  /** Clock tolerance between threads: orderings closer than this are treated as concurrent. */
  epsilonMs: number;
  /** Hot-key stream records the consumer applied (invalidations the stream caused). */
  hotStreamInvalidations?: number;
  /** What the run's watches saw of each node answering nobody, no fault injected (network.ts). */
  nodeSilences?: readonly NodeSilence[];
}

export const defaultCheckOptions: CheckOptions = {
  policy: 'strict',
  commandTimeoutMs: 300,
  staleBoundMs: 1250,
  recoveryGraceMs: 5000,
  latencySlackMs: 100,
  epsilonMs: 1,
};

export interface Distribution {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface StaleExample {
  key: string;
  read: Pick<OpRecord, 'client' | 'op' | 'kind' | 'value' | 'start' | 'end' | 'source'>;
  /** The write whose value the read returned (undefined: the initial absence). */
  readWrite?: Pick<OpRecord, 'client' | 'op' | 'kind' | 'start' | 'end' | 'outcome'>;
  /** The acknowledged write that should have hidden it (the earliest-ending one). */
  superseding: Pick<OpRecord, 'client' | 'op' | 'kind' | 'value' | 'start' | 'end' | 'degraded' | 'endLost'>;
  /** How long after that write was acknowledged the read started (ms). */
  ageMs: number;
  /** Fault windows open around the superseding write or the read. */
  faults: string[];
}

export interface PhantomExample {
  key: string;
  read: Pick<OpRecord, 'client' | 'op' | 'kind' | 'value' | 'start' | 'end' | 'source'>;
  reason: 'never written' | 'write did not commit' | 'written after the read ended';
}

export interface FailedExample {
  client: string;
  op: number;
  kind: string;
  key: string;
  start: number;
  end: number;
  error: string;
  message: string;
  reason: string;
  /** The container's own event loop stall during the operation (OpRecord.starvedMs). */
  starvedMs?: number;
  /** The longest silence of its node the run's watch saw during it (nodeSilentMs). */
  nodeSilentMs?: number;
}

export interface FaultLatency {
  windows: number;
  operations: number;
  p50: number;
  p99: number;
  max: number;
  /**
   * Largest cache time: latency minus the operation's own DynamoDB time minus, for a reader that
   * waited on another reader's fill lease, the overlap with that filler's DynamoDB read (waitedMs).
   */
  maxCacheMs: number;
  /** Operations whose cache time exceeded command timeout + slack. */
  overBudget: number;
  /** Operations credited with a wait on another operation's DynamoDB read of the same key (waitedMs > 0). */
  waitedOnFill: number;
  worst?: { client: string; kind: string; key: string; latencyMs: number; dynamoMs: number; waitedMs: number; source?: string };
}

/** Per fault class: how many windows, and what the checker counted around them. */
export interface FaultCounts {
  windows: number;
  /** Stale reads whose superseding write or read overlapped a window of this class (+ grace; a remap: any time after it). */
  staleReads: number;
  /** Failed requests attributed to this class (a strict refusal: the last fault on its node before it). */
  failedRequests: number;
  /** Strict refusals excused by a window of this class (before its node answered + one command timeout). */
  refusalsExcused: number;
  /** Strict refusals counted as failed although this class's last window on the node had been lifted and the node answered. */
  refusalsAfterAnswer: number;
  /** Errors not counted because DynamoDB failed (injected, or a DynamoDB fault window). */
  dynamoFaultErrors: number;
}

export interface CheckResult {
  operations: { total: number; reads: number; writes: number; byKind: Record<string, number>; byOutcome: Record<string, number> };
  reads: { checked: number; hits: number; misses: number; bypasses: number; ofUncertainWrites: number };
  staleReads: number;
  staleExamples: StaleExample[];
  /** available policy: stale reads explained by writes that could not reach their node (R6's documented bound). */
  boundedStaleReads: { count: number; ageMs: Distribution; beyondBound: number; examples: StaleExample[] };
  phantomReads: number;
  phantomExamples: PhantomExample[];
  failedRequests: number;
  failedByReason: Record<string, number>;
  failedExamples: FailedExample[];
  /** strict policy: writes refused (nothing committed) while a fault on their node was on, or until it answered + one command timeout. */
  refusedWrites: number;
  /**
   * Of those, refusals a partition excused in a container it did not cut, by the address it cut (the
   * node under the cut container's map, fenced while its id was not known here): counted so that a
   * library that stopped learning node ids would show here, not hide.
   */
  refusalsAtCutAddress: number;
  /** strict policy: refusals counted as failed requests (their node answered, or no fault was on their node). */
  refusalsCountedFailed: number;
  /**
   * strict policy: refusals with no excusing fault whose own container stood still (its thread not
   * scheduled) for at least a quarter of the command timeout meanwhile (`starvedDuring`): the
   * container could not hear its node in time, whatever the node did. Counted apart, not failed;
   * 0 on a quiet machine.
   */
  refusalsStarved: number;
  /**
   * What the run's watch (network.ts) saw of nodes answering nobody with no fault injected on them:
   * silences of half a command timeout or more (the watch's own stalls taken off), outside every
   * cache fault on their node and every slow command of it. A diagnosis, not an excuse: a refusal
   * in one is still a failed request, its example carrying `nodeSilentMs`.
   */
  nodeSilences: { count: number; longestMs: number; byNode: Record<string, number> };
  /**
   * strict policy, cluster mode: writes refused because no replica acknowledged the fence in time
   * (`WAIT`; "no replica of cache node … acknowledged"), with no excusing fault: the policy's
   * documented refusal (issue 12: counted apart from failed requests), nothing written.
   */
  refusalsUnreplicated: number;
  /** Per fault class ('none': attributed to no fault). A stale read or failure near two classes counts in each. */
  byFault: Partial<Record<FaultKind | 'none', FaultCounts>>;
  /** Errors not counted as failures because DynamoDB itself was failing (injected or inside a DynamoDB fault). */
  dynamoFaultErrors: number;
  writes: {
    acknowledged: number;
    notCommitted: number;
    uncertain: number;
    committedUnacknowledged: number;
    degraded: number;
    endLost: number;
  };
  outOfBandStaleReads: { count: number; ageMs: Distribution };
  outOfBandLagMs: Distribution & { samples: number; superseded: number; timeouts: number };
  outOfBandLagDuringStreamPauseMs: Distribution;
  /** Of outOfBandLagMs: samples with no fault at all around them, and those during a cache fault. */
  outOfBandLagHealthyMs: Distribution;
  outOfBandLagDuringCacheFaultsMs: Distribution;
  faultLatencyMs: Partial<Record<FaultKind | 'none', FaultLatency>>;
  hotKeys: {
    dynamoReads: number;
    invalidations: number;
    writes: number;
    readsPerInvalidation: number;
    readsPerWrite: number;
    dynamoReadsOutsideFaults: number;
    invalidationsOutsideFaults: number;
    readsPerInvalidationOutsideFaults: number;
  };
}

export function distribution(values: number[]): Distribution {
  if (values.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
  return { count: s.length, p50: round(at(0.5)), p99: round(at(0.99)), max: round(s[s.length - 1] as number) };
}

const round = (x: number): number => Math.round(x * 10) / 10;
const ratio = (a: number, b: number): number => (b > 0 ? Math.round((a / b) * 100) / 100 : 0);

/** How a write's effect is known. */
interface WriteInfo {
  rec: OpRecord;
  committed: 'yes' | 'no' | 'maybe';
  acknowledged: boolean;
  /** By when it committed, if it did: its end, or +∞ when uncertain (it may land any time). */
  effectiveEnd: number;
  oob: boolean;
}

/** Writes sorted by start with the suffix minimum of their ends: "some write started after T1 and ended before T2". */
class Superseders {
  private readonly writes: WriteInfo[];
  private readonly minEndFrom: number[];
  private readonly minEndIndex: number[];

  constructor(writes: WriteInfo[]) {
    this.writes = [...writes].sort((a, b) => a.rec.start - b.rec.start);
    this.minEndFrom = new Array<number>(this.writes.length + 1).fill(Infinity);
    this.minEndIndex = new Array<number>(this.writes.length + 1).fill(-1);
    for (let i = this.writes.length - 1; i >= 0; i--) {
      const end = (this.writes[i] as WriteInfo).rec.end;
      const next = this.minEndFrom[i + 1] as number;
      if (end < next) {
        this.minEndFrom[i] = end;
        this.minEndIndex[i] = i;
      } else {
        this.minEndFrom[i] = next;
        this.minEndIndex[i] = this.minEndIndex[i + 1] as number;
      }
    }
  }

  /** The earliest-ending write that started after `after` and ended before `before`, if any. */
  find(after: number, before: number): WriteInfo | undefined {
    let lo = 0;
    let hi = this.writes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.writes[mid] as WriteInfo).rec.start > after) hi = mid;
      else lo = mid + 1;
    }
    if ((this.minEndFrom[lo] as number) >= before) return undefined;
    // (v's own write is never among them: it cannot start after its own end.)
    return this.writes[this.minEndIndex[lo] as number];
  }
}

interface KeyIndex {
  values: Map<string, WriteInfo>;
  deletes: WriteInfo[];
  lib: Superseders;
  libStrong: Superseders;
  oob: Superseders;
}

function classifyWrite(rec: OpRecord): WriteInfo {
  const oob = OOB_KINDS.has(rec.kind);
  if (rec.outcome === 'ok') return { rec, committed: 'yes', acknowledged: true, effectiveEnd: rec.end, oob };
  if ((rec.outcome === 'rejected' && !rec.maybeWritten) || rec.injected === 'before')
    return { rec, committed: 'no', acknowledged: false, effectiveEnd: rec.end, oob };
  if (rec.injected === 'after') return { rec, committed: 'yes', acknowledged: false, effectiveEnd: rec.end, oob };
  return { rec, committed: 'maybe', acknowledged: false, effectiveEnd: Infinity, oob };
}

function overlaps(rec: { start: number; end: number }, w: FaultWindow, graceMs: number): boolean {
  return rec.start <= w.end + graceMs && rec.end >= w.start;
}

function pickRead(r: OpRecord): StaleExample['read'] {
  return { client: r.client, op: r.op, kind: r.kind, value: r.value, start: r.start, end: r.end, source: r.source };
}

/** One DynamoDB read call of a key, by one operation (`client:op`). */
interface ReadSpan {
  start: number;
  end: number;
  owner: string;
}

/**
 * Per operation that waited on another reader's fill lease (leaseWaits > 0), keyed `client:op`: the
 * credit for that wait — the largest overlap of the operation's [start, end] with ONE DynamoDB read
 * call of one of its keys made by a different operation (another client, or the same client's other
 * operation: containers run several at once). One call, not a sum: the waiter waited for one fill.
 * Operations that never waited get no entry (no credit). Spans are indexed once per key, sorted by
 * start, with the key's longest span: each waiter looks only at spans that can reach it.
 */
export function waitedOnFill(records: readonly OpRecord[]): Map<string, number> {
  const spans = new Map<string, ReadSpan[]>();
  const waiters = new Map<string, { start: number; end: number; keys: Set<string> }>();
  for (const r of records) {
    const owner = `${r.client}:${r.op}`;
    if (r.dynamoReadSpans?.length) {
      let list = spans.get(r.key);
      if (!list) spans.set(r.key, (list = []));
      for (const [start, end] of r.dynamoReadSpans) list.push({ start, end, owner });
    }
    if ((r.leaseWaits ?? 0) > 0) {
      let w = waiters.get(owner);
      if (!w) waiters.set(owner, (w = { start: r.start, end: r.end, keys: new Set() }));
      w.keys.add(r.key);
    }
  }
  const out = new Map<string, number>();
  if (waiters.size === 0) return out;
  const index = new Map<string, { spans: ReadSpan[]; longest: number }>();
  for (const [key, list] of spans) {
    list.sort((a, b) => a.start - b.start);
    index.set(key, { spans: list, longest: list.reduce((m, s) => Math.max(m, s.end - s.start), 0) });
  }
  for (const [owner, w] of waiters) {
    let best = 0;
    for (const key of w.keys) {
      const ix = index.get(key);
      if (!ix) continue;
      // The first span starting after the operation ended; walk back to those that can still overlap it.
      let lo = 0;
      let hi = ix.spans.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((ix.spans[mid] as ReadSpan).start > w.end) hi = mid;
        else lo = mid + 1;
      }
      for (let i = lo - 1; i >= 0; i--) {
        const s = ix.spans[i] as ReadSpan;
        if (s.start < w.start - ix.longest) break;
        if (s.owner === owner) continue;
        const overlap = Math.min(w.end, s.end) - Math.max(w.start, s.start);
        if (overlap > best) best = overlap;
      }
    }
    if (best > 0) out.set(owner, best);
  }
  return out;
}

/**
 * Issue 11's rule for a strict refusal (CacheUnavailable under `strict`): it is excused only by a
 * cache fault on the write's own node (`rec.node`; for a partition, only in the containers cut off)
 * that was on when the write ran, or that was lifted before it but whose node had not yet answered
 * plus one command timeout: `rec.end ≥ window.start` and `rec.start ≤ window.answeredAt +
 * commandTimeoutMs` (`window.end` when the window has no `answeredAt`). A refusal while the node
 * answers breaks strict's own contract (refuse only when the node cannot be reached), so any other
 * refusal is a failed request. Returns the excusing window, or undefined.
 */
export function refusalExcuse(
  rec: Pick<OpRecord, 'client' | 'start' | 'end' | 'node' | 'message'>,
  windows: readonly FaultWindow[],
  commandTimeoutMs: number,
): FaultWindow | undefined {
  if (rec.node === undefined) return undefined;
  const asked = refusedAt(rec);
  return windows.find(
    (w) =>
      onNodeUntilAnswered(w, rec.node as string, rec, commandTimeoutMs) &&
      (w.clients === undefined || w.clients.includes(rec.client) || (w.address !== undefined && sameAddress(asked, w.address))),
  );
}

/** `w` is a cache fault on `node` overlapping `span`, counted until the node answered again plus one command timeout. */
function onNodeUntilAnswered(w: FaultWindow, node: string, span: { start: number; end: number }, commandTimeoutMs: number): boolean {
  return CACHE_FAULTS.has(w.kind) && w.node === node && span.end >= w.start && span.start <= (w.answeredAt ?? w.end) + commandTimeoutMs;
}

/** How long a silence was the node's: its length less the watcher's own stalls within it. */
function silentMs(s: NodeSilence): number {
  return s.end - s.start - s.ownStallMs;
}

/** The address a strict refusal names as the node that did not answer ("cache node <address> cannot …"). */
export function refusedAt(rec: Pick<OpRecord, 'message'>): string | undefined {
  return /cache node (\S+) (?:cannot|acknowledged)/.exec(rec.message ?? '')?.[1];
}

function sameAddress(a: string | undefined, b: string): boolean {
  if (a === undefined) return false;
  try {
    const x = new URL(a);
    const y = new URL(b);
    return x.hostname === y.hostname && x.port === y.port;
  } catch {
    return false;
  }
}

/**
 * The longest silence of the operation's node the watch saw overlapping it (ms, the watch's own
 * stalls taken off; 0: none): told with a failed request, so that a refusal while the node answered
 * nobody can be told from one while it answered. It excuses nothing: a silence shorter than the
 * command timeout cannot alone make a command time out, and the watch cannot tell a node the machine
 * did not run from one busy with the library's own command (CONSISTENCY.md, "node watch").
 */
export function nodeSilentMs(rec: Pick<OpRecord, 'start' | 'end' | 'node'>, silences: readonly NodeSilence[]): number {
  let longest = 0;
  for (const s of silences) {
    if (s.node !== rec.node || s.end < rec.start || s.start > rec.end) continue;
    longest = Math.max(longest, silentMs(s));
  }
  return Math.round(longest);
}

/**
 * A refusal whose container itself stood still for at least a quarter of the command timeout while it
 * ran (OpRecord.starvedMs): an answer that arrived meanwhile was read only after the command's timer
 * fired (the timer phase runs before I/O), so the client could not hear its node in time.
 */
export function starvedDuring(rec: Pick<OpRecord, 'starvedMs'>, commandTimeoutMs: number): boolean {
  return (rec.starvedMs ?? 0) >= commandTimeoutMs / 4;
}

/** The silences of half a command timeout or more outside every cache fault on their node and every slow command of it. */
function summarizeSilences(
  silences: readonly NodeSilence[],
  faults: readonly FaultWindow[],
  commandTimeoutMs: number,
): CheckResult['nodeSilences'] {
  const out: CheckResult['nodeSilences'] = { count: 0, longestMs: 0, byNode: {} };
  for (const s of silences) {
    const ms = silentMs(s);
    if (ms < commandTimeoutMs / 2 || s.busyWith !== undefined) continue;
    if (faults.some((w) => onNodeUntilAnswered(w, s.node, s, commandTimeoutMs))) continue;
    out.count++;
    out.longestMs = Math.max(out.longestMs, Math.round(ms));
    out.byNode[s.node] = (out.byNode[s.node] ?? 0) + 1;
  }
  return out;
}

/** A strict refusal for want of a replica's acknowledgement (protocol.ts `unreplicated`): documented, nothing written. */
export function unreplicated(rec: Pick<OpRecord, 'message'>): boolean {
  return /^no replica of cache node \S+ acknowledged .*nothing was written$/.test(rec.message ?? '');
}

/** The last cache fault on the refused write's node (as its container saw it) that started before it (undefined: none). */
function lastFaultOnNode(rec: Pick<OpRecord, 'client' | 'start' | 'node'>, windows: readonly FaultWindow[]): FaultWindow | undefined {
  let last: FaultWindow | undefined;
  for (const w of windows) {
    if (!CACHE_FAULTS.has(w.kind) || w.node === undefined || w.node !== rec.node || w.start > rec.start) continue;
    if (w.clients !== undefined && !w.clients.includes(rec.client)) continue;
    if (last === undefined || w.start > last.start) last = w;
  }
  return last;
}

export function check(
  records: readonly OpRecord[],
  faults: readonly FaultWindow[],
  oob: readonly OobSample[],
  options: Partial<CheckOptions> = {},
): CheckResult {
  const o: CheckOptions = { ...defaultCheckOptions, ...options };
  const eps = o.epsilonMs;

  // --- per fault class ----------------------------------------------------------------------
  const byFault: CheckResult['byFault'] = {};
  const countFault = (kind: FaultKind | 'none'): FaultCounts =>
    (byFault[kind] ??= { windows: 0, staleReads: 0, failedRequests: 0, refusalsExcused: 0, refusalsAfterAnswer: 0, dynamoFaultErrors: 0 });
  for (const w of faults) countFault(w.kind).windows++;
  countFault('none');
  // The classes whose windows (+ grace) overlap any of `spans`; a map change serves old entries until
  // their TTL, so a remap is blamed for anything after it started. 'none' when there is no such class.
  const kindsAround = (spans: { start: number; end: number }[]): (FaultKind | 'none')[] => {
    const kinds = new Set<FaultKind>();
    for (const w of faults) {
      const grace = w.kind === 'remap' ? Infinity : o.recoveryGraceMs;
      if (spans.some((s) => overlaps(s, w, grace))) kinds.add(w.kind);
    }
    return kinds.size ? [...kinds] : ['none'];
  };

  // --- operations ---------------------------------------------------------------------------
  const uniqueOps = new Map<string, OpRecord>();
  for (const r of records) {
    const id = `${r.client}:${r.op}`;
    if (!uniqueOps.has(id)) uniqueOps.set(id, r);
  }
  const byKind: Record<string, number> = {};
  const byOutcome: Record<string, number> = {};
  let readOps = 0;
  let writeOps = 0;
  for (const r of uniqueOps.values()) {
    byKind[r.kind] = (byKind[r.kind] ?? 0) + 1;
    const label = r.outcome === 'ok' ? 'ok' : `${r.outcome}:${r.error ?? '?'}`;
    byOutcome[label] = (byOutcome[label] ?? 0) + 1;
    if (WRITE_KINDS.has(r.kind)) writeOps++;
    else readOps++;
  }

  // --- writes, per key ----------------------------------------------------------------------
  const perKey = new Map<string, WriteInfo[]>();
  const writes = { acknowledged: 0, notCommitted: 0, uncertain: 0, committedUnacknowledged: 0, degraded: 0, endLost: 0 };
  for (const r of records) {
    if (!WRITE_KINDS.has(r.kind)) continue;
    const w = classifyWrite(r);
    if (w.acknowledged) writes.acknowledged++;
    else if (w.committed === 'no') writes.notCommitted++;
    else if (w.committed === 'maybe') writes.uncertain++;
    else writes.committedUnacknowledged++;
    if (r.degraded) writes.degraded++;
    if (r.endLost) writes.endLost++;
    let list = perKey.get(r.key);
    if (!list) perKey.set(r.key, (list = []));
    list.push(w);
  }
  const index = new Map<string, KeyIndex>();
  const indexOf = (key: string): KeyIndex => {
    let ix = index.get(key);
    if (ix) return ix;
    const list = perKey.get(key) ?? [];
    const values = new Map<string, WriteInfo>();
    const deletes: WriteInfo[] = [];
    for (const w of list) {
      if (w.rec.value === ABSENT) deletes.push(w);
      else values.set(w.rec.value, w);
    }
    const acked = list.filter((w) => w.acknowledged);
    ix = {
      values,
      deletes,
      lib: new Superseders(acked.filter((w) => !w.oob)),
      libStrong: new Superseders(acked.filter((w) => !w.oob && !w.rec.degraded)),
      oob: new Superseders(acked.filter((w) => w.oob)),
    };
    index.set(key, ix);
    return ix;
  };

  const faultsAround = (a: { start: number; end: number }, b: { start: number; end: number }): string[] =>
    faults
      .filter((w) => {
        const grace = w.kind === 'remap' ? Infinity : o.recoveryGraceMs;
        return overlaps(a, w, grace) || overlaps(b, w, grace);
      })
      .map((w) => `${w.kind}@${w.target}`);

  // --- reads --------------------------------------------------------------------------------
  const reads = { checked: 0, hits: 0, misses: 0, bypasses: 0, ofUncertainWrites: 0 };
  const staleExamples: StaleExample[] = [];
  let staleReads = 0;
  const bounded: StaleExample[] = [];
  const boundedAges: number[] = [];
  let phantomReads = 0;
  const phantomExamples: PhantomExample[] = [];
  const oobAges: number[] = [];
  for (const r of records) {
    if (WRITE_KINDS.has(r.kind) || r.outcome !== 'ok') continue;
    reads.checked++;
    if (r.source === 'hit') reads.hits++;
    else if (r.source === 'miss') reads.misses++;
    else if (r.source === 'bypass') reads.bypasses++;
    const ix = indexOf(r.key);
    let after: number;
    let own: WriteInfo | undefined;
    if (r.value === ABSENT) {
      // The latest-ending delete that may have committed by then, or the initial absence.
      after = -Infinity;
      for (const d of ix.deletes) {
        if (d.committed === 'no' || d.rec.start > r.end + eps) continue;
        if (d.effectiveEnd > after) {
          after = d.effectiveEnd;
          own = d;
        }
      }
    } else {
      own = ix.values.get(r.value);
      let reason: PhantomExample['reason'] | undefined;
      if (own === undefined) reason = 'never written';
      else if (own.committed === 'no') reason = 'write did not commit';
      else if (own.rec.start > r.end + eps) reason = 'written after the read ended';
      if (reason !== undefined || own === undefined) {
        phantomReads++;
        if (phantomExamples.length < 20) phantomExamples.push({ key: r.key, read: pickRead(r), reason: reason ?? 'never written' });
        continue;
      }
      if (own.committed === 'maybe') reads.ofUncertainWrites++;
      after = own.effectiveEnd;
    }
    if (after === Infinity) continue;
    const sup = ix.lib.find(after + eps, r.start - eps);
    const example = (s: WriteInfo): StaleExample => ({
      key: r.key,
      read: pickRead(r),
      readWrite: own
        ? { client: own.rec.client, op: own.rec.op, kind: own.rec.kind, start: own.rec.start, end: own.rec.end, outcome: own.rec.outcome }
        : undefined,
      superseding: {
        client: s.rec.client,
        op: s.rec.op,
        kind: s.rec.kind,
        value: s.rec.value,
        start: s.rec.start,
        end: s.rec.end,
        degraded: s.rec.degraded,
        endLost: s.rec.endLost,
      },
      ageMs: round(r.start - s.rec.end),
      faults: faultsAround(s.rec, r),
    });
    if (sup !== undefined) {
      const strong = o.policy === 'available' ? ix.libStrong.find(after + eps, r.start - eps) : sup;
      if (strong === undefined) {
        // available policy, every superseding write committed with its key dirty: R6's documented bound.
        boundedAges.push(r.start - sup.rec.end);
        if (bounded.length < 20) bounded.push(example(sup));
      } else {
        staleReads++;
        for (const k of kindsAround([strong.rec, r])) countFault(k).staleReads++;
        if (staleExamples.length < 20) staleExamples.push(example(strong));
      }
      continue;
    }
    const oobSup = ix.oob.find(after + eps, r.start - eps);
    if (oobSup !== undefined) oobAges.push(r.start - oobSup.rec.end);
  }

  // --- failed requests ----------------------------------------------------------------------
  let failedRequests = 0;
  let refusedWrites = 0;
  let dynamoFaultErrors = 0;
  const failedByReason: Record<string, number> = {};
  const failedExamples: FailedExample[] = [];
  let refusalsCountedFailed = 0;
  let refusalsStarved = 0;
  let refusalsAtCutAddress = 0;
  let refusalsUnreplicated = 0;
  const cacheFaults = faults.filter((w) => CACHE_FAULTS.has(w.kind));
  const dynamoFaults = faults.filter((w) => DYNAMO_FAULTS.has(w.kind));
  for (const r of uniqueOps.values()) {
    if (r.outcome === 'ok') continue;
    if (r.error === 'ItemNotFound') continue;
    let reason: string | undefined;
    let blamed: (FaultKind | 'none')[];
    if (r.error === 'CacheUnavailable' && o.policy === 'strict') {
      const excuse = refusalExcuse(r, faults, o.commandTimeoutMs);
      if (excuse !== undefined) {
        refusedWrites++;
        if (excuse.clients !== undefined && !excuse.clients.includes(r.client)) refusalsAtCutAddress++;
        countFault(excuse.kind).refusalsExcused++;
        continue;
      }
      if (starvedDuring(r, o.commandTimeoutMs)) {
        refusalsStarved++;
        continue;
      }
      if (unreplicated(r)) {
        refusalsUnreplicated++;
        continue;
      }
      refusalsCountedFailed++;
      const last = lastFaultOnNode(r, faults);
      if (last !== undefined) {
        reason = `strict refusal after its node answered again (${last.kind})`;
        countFault(last.kind).refusalsAfterAnswer++;
        blamed = [last.kind];
      } else {
        reason = 'strict refusal with no fault on its node';
        blamed = ['none'];
      }
    } else if (r.injected !== undefined || dynamoFaults.some((w) => overlaps(r, w, 0))) {
      dynamoFaultErrors++;
      const kinds = new Set(dynamoFaults.filter((w) => overlaps(r, w, 0)).map((w) => w.kind));
      for (const k of kinds.size ? kinds : ['dynamo' as const]) countFault(k).dynamoFaultErrors++;
      continue;
    } else {
      const what = /changed under every attempt/.test(r.message ?? '')
        ? 'StoreUnavailable (put gave up: version conflicts on every attempt)'
        : (r.error ?? 'Error');
      reason = `${what}${cacheFaults.some((w) => overlaps(r, w, o.recoveryGraceMs)) ? ' during a cache fault' : ''}`;
      blamed = kindsAround([r]);
    }
    for (const k of blamed) countFault(k).failedRequests++;
    failedRequests++;
    failedByReason[reason] = (failedByReason[reason] ?? 0) + 1;
    if (failedExamples.length < 20) {
      const silent = nodeSilentMs(r, o.nodeSilences ?? []);
      failedExamples.push({
        client: r.client,
        op: r.op,
        kind: r.kind,
        key: r.key,
        start: r.start,
        end: r.end,
        error: r.error ?? '?',
        message: r.message ?? '',
        reason,
        ...(r.starvedMs !== undefined ? { starvedMs: r.starvedMs } : {}),
        ...(silent > 0 ? { nodeSilentMs: silent } : {}),
      });
    }
  }

  // --- out-of-band lag ----------------------------------------------------------------------
  const streamPauses = faults.filter((w) => w.kind === 'stream');
  const lags: number[] = [];
  const pausedLags: number[] = [];
  const healthyLags: number[] = [];
  const cacheFaultLags: number[] = [];
  let superseded = 0;
  let timeouts = 0;
  for (const s of oob) {
    if (s.outcome === 'superseded') superseded++;
    if (s.outcome === 'timeout') timeouts++;
    if (s.outcome !== 'seen' || s.seenAt === undefined) continue;
    const lag = s.seenAt - s.writeEnd;
    const span = { start: s.writeEnd, end: s.seenAt };
    if (streamPauses.some((w) => overlaps(span, w, 0))) {
      pausedLags.push(lag);
      continue;
    }
    lags.push(lag);
    if (cacheFaults.some((w) => overlaps(span, w, o.recoveryGraceMs))) cacheFaultLags.push(lag);
    else if (!faults.some((w) => overlaps(span, w, 0))) healthyLags.push(lag);
  }

  // --- latency during faults ----------------------------------------------------------------
  const waited = waitedOnFill(records);
  const faultLatencyMs: CheckResult['faultLatencyMs'] = {};
  const timed = [...uniqueOps.values()].filter((r) => !r.sweep && !OOB_KINDS.has(r.kind));
  // An operation belongs to a fault's window when it overlaps the fault or the second after it.
  const inWindow = (r: OpRecord, w: FaultWindow): boolean => r.start <= w.end + 1000 && r.end >= w.start;
  const latencyOf = (ops: OpRecord[], windows: number): FaultLatency => {
    const lat = ops.map((r) => r.end - r.start);
    const d = distribution(lat);
    let maxCacheMs = 0;
    let overBudget = 0;
    let waitedOps = 0;
    let worst: OpRecord | undefined;
    let worstWaitedMs = 0;
    for (const r of ops) {
      const waitedMs = waited.get(`${r.client}:${r.op}`) ?? 0;
      if (waitedMs > 0) waitedOps++;
      const cacheMs = r.end - r.start - r.dynamoMs - waitedMs;
      if (cacheMs > maxCacheMs) {
        maxCacheMs = cacheMs;
        worst = r;
        worstWaitedMs = waitedMs;
      }
      if (cacheMs > o.commandTimeoutMs + o.latencySlackMs) overBudget++;
    }
    return {
      windows,
      operations: d.count,
      p50: d.p50,
      p99: d.p99,
      max: d.max,
      maxCacheMs: round(maxCacheMs),
      overBudget,
      waitedOnFill: waitedOps,
      worst: worst && {
        client: worst.client,
        kind: worst.kind,
        key: worst.key,
        latencyMs: round(worst.end - worst.start),
        dynamoMs: round(worst.dynamoMs),
        waitedMs: round(worstWaitedMs),
        source: worst.source,
      },
    };
  };
  const kinds = [...new Set(faults.map((w) => w.kind))];
  for (const kind of kinds) {
    const ws = faults.filter((w) => w.kind === kind);
    faultLatencyMs[kind] = latencyOf(
      timed.filter((r) => ws.some((w) => inWindow(r, w))),
      ws.length,
    );
  }
  faultLatencyMs.none = latencyOf(
    timed.filter((r) => !faults.some((w) => inWindow(r, w))),
    0,
  );

  // --- DynamoDB reads per hot-key invalidation ----------------------------------------------
  let hotReads = 0;
  let hotReadsQuiet = 0;
  let hotBegun = 0;
  let hotBegunQuiet = 0;
  let hotWrites = 0;
  const inAnyFault = (r: OpRecord): boolean => faults.some((w) => overlaps(r, w, o.recoveryGraceMs));
  for (const r of records) {
    if (!r.hot || r.sweep) continue;
    const quiet = !inAnyFault(r);
    if (r.kind === 'get' || r.kind === 'batchGet') {
      hotReads += r.dynamoReads;
      if (quiet) hotReadsQuiet += r.dynamoReads;
    } else if (WRITE_KINDS.has(r.kind)) {
      if (classifyWrite(r).committed !== 'no') hotWrites++;
      // A library write that reached its node dropped the entry at begin (whether or not it committed).
      if (!OOB_KINDS.has(r.kind) && r.error !== 'CacheUnavailable' && !r.degraded) {
        hotBegun++;
        if (quiet) hotBegunQuiet++;
      }
    }
  }
  const streamInv = o.hotStreamInvalidations ?? 0;
  // Stream invalidations cannot be attributed to windows here; split them in proportion to the writes.
  const streamQuiet = hotBegun > 0 ? (streamInv * hotBegunQuiet) / hotBegun : 0;
  const invalidations = hotBegun + streamInv;
  const invalidationsQuiet = hotBegunQuiet + streamQuiet;

  return {
    operations: { total: uniqueOps.size, reads: readOps, writes: writeOps, byKind, byOutcome },
    reads,
    staleReads,
    staleExamples,
    boundedStaleReads: {
      count: boundedAges.length,
      ageMs: distribution(boundedAges),
      beyondBound: boundedAges.filter((a) => a > o.staleBoundMs).length,
      examples: bounded,
    },
    phantomReads,
    phantomExamples,
    failedRequests,
    failedByReason,
    failedExamples,
    refusedWrites,
    refusalsCountedFailed,
    refusalsStarved,
    refusalsAtCutAddress,
    nodeSilences: summarizeSilences(o.nodeSilences ?? [], faults, o.commandTimeoutMs),
    refusalsUnreplicated,
    byFault,
    dynamoFaultErrors,
    writes,
    outOfBandStaleReads: { count: oobAges.length, ageMs: distribution(oobAges) },
    outOfBandLagMs: { ...distribution(lags), samples: oob.length, superseded, timeouts },
    outOfBandLagDuringStreamPauseMs: distribution(pausedLags),
    outOfBandLagHealthyMs: distribution(healthyLags),
    outOfBandLagDuringCacheFaultsMs: distribution(cacheFaultLags),
    faultLatencyMs,
    hotKeys: {
      dynamoReads: hotReads,
      invalidations: Math.round(invalidations),
      writes: hotWrites,
      readsPerInvalidation: ratio(hotReads, invalidations),
      readsPerWrite: ratio(hotReads, hotWrites),
      dynamoReadsOutsideFaults: hotReadsQuiet,
      invalidationsOutsideFaults: Math.round(invalidationsQuiet),
      readsPerInvalidationOutsideFaults: ratio(hotReadsQuiet, invalidationsQuiet),
    },
  };
}
