/**
 * What a run records. Every operation of every client (worker containers, the out-of-band writer,
 * the out-of-band probe) becomes one record per key it touched, with wall-clock start and end
 * (`performance.timeOrigin + performance.now()`, comparable across worker threads).
 */

/** The value a read returns, or a delete writes, when there is no item. */
export const ABSENT = '∅';

export type OpKind = 'get' | 'batchGet' | 'put' | 'update' | 'delete' | 'oobPut' | 'oobDelete';

export const WRITE_KINDS: ReadonlySet<OpKind> = new Set(['put', 'update', 'delete', 'oobPut', 'oobDelete']);
export const OOB_KINDS: ReadonlySet<OpKind> = new Set(['oobPut', 'oobDelete']);

/**
 * ok       the call returned normally (a write: acknowledged, committed);
 * rejected the library refused or DynamoDB's condition failed: nothing was committed
 *          (ItemNotFound for an update of a missing item, a strict-policy CacheUnavailable refusal);
 * error    anything else: a write may or may not have committed.
 */
export type Outcome = 'ok' | 'rejected' | 'error';

export interface OpRecord {
  /** Operation id, unique per client; a batch get's keys share one. */
  op: number;
  /** w0…wN (worker containers), oob (direct DynamoDB writer), probe (out-of-band probe), and `sweep` reads at the end. */
  client: string;
  kind: OpKind;
  /** `u/<userId>` or `o/<customerId>/<orderId>`. */
  key: string;
  hot: boolean;
  /** Written value (put/update/oob put), ABSENT (delete), or the value read (ABSENT when not found). */
  value: string;
  start: number;
  end: number;
  outcome: Outcome;
  /** Error class code (CacheUnavailable, StoreUnavailable, ItemNotFound, …). */
  error?: string;
  message?: string;
  /**
   * A DynamoDB fault injected into this operation by the harness: `before` the request was sent
   * (nothing committed) or `after` its answer came back (committed, but the caller saw an error).
   */
  injected?: 'before' | 'after';
  /** Latency injected into its DynamoDB calls (ms). */
  injectedDelayMs?: number;
  /**
   * A refusal (VersionMismatch, ItemNotFound) after the SDK retried the request: an earlier attempt
   * whose answer was lost may have been applied (the library says so: `nothingWritten` false), so
   * the write is uncertain, not "did not commit".
   */
  maybeWritten?: boolean;
  /** A write whose begin-write could not reach the node: committed with the key left dirty (available policy). */
  degraded?: boolean;
  /** A write whose end-write could not reach the node (its fence is what protects readers). */
  endLost?: boolean;
  /** Redis steps that failed during the operation (`during@node: error`), which marked the node down. */
  cacheErrors?: string[];
  /** Reads: where the answer came from (hit, miss, bypass). */
  source?: string;
  /** Time spent in DynamoDB calls (including injected latency), their count, and item reads of this key. */
  dynamoMs: number;
  dynamoCalls: number;
  dynamoReads: number;
  /**
   * The wall-clock span [t0, t1] of each GetItem / BatchGetItem call of this operation that read
   * this record's key (SDK retries and injected latency included); absent when there was none.
   * The checker uses other operations' spans to credit a reader that waited for their fill.
   */
  dynamoReadSpans?: [number, number][];
  /**
   * How many times the operation found another reader's live fill lease and slept before polling
   * again (G5: one filler per key); absent when it never waited. Counted per operation.
   */
  leaseWaits?: number;
  /** Part of the final sweep (after the faults and the load stopped). */
  sweep?: boolean;
  /**
   * Writes: the shard the container's own shard map sent the key to (`shard0`…), as fault windows
   * name it; a strict refusal is excused only by a fault on this node (checker.ts, refusalExcuse).
   */
  node?: string;
  /**
   * The longest stall of the container's own event loop (its thread not scheduled) that overlapped the
   * operation, in ms, when at least 50 ms; absent otherwise. A command answered during such a stall
   * times out in the client, whatever the node did.
   */
  starvedMs?: number;
}

export type FaultKind =
  | 'kill'
  | 'hang'
  | 'restart'
  | 'evict'
  | 'failover'
  | 'dynamo'
  | 'stream'
  | 'partition'
  | 'slow'
  | 'stall'
  | 'maxmemory'
  | 'remap'
  | 'blackhole'
  | 'migrate';

/** The fault classes the protocol was designed for (R1–R9): the runs before issue 11 used these. */
export const DESIGNED_FAULTS: readonly FaultKind[] = [
  'kill',
  'hang',
  'restart',
  'evict',
  'failover',
  'dynamo',
  'stream',
  'partition',
  'slow',
];

/** The classes issue 11 added: faults nobody designed for. */
export const NEW_FAULTS: readonly FaultKind[] = ['stall', 'maxmemory', 'remap', 'blackhole'];

export const ALL_FAULTS: readonly FaultKind[] = [...DESIGNED_FAULTS, ...NEW_FAULTS];

/**
 * Cluster mode's classes (`--mode cluster`): the node faults act on one primary of the cluster, the
 * failover promotes its replica (CLUSTER FAILOVER TAKEOVER), and `migrate` moves slots under load. No
 * `partition` (a client finds every primary by the address CLUSTER SLOTS gives, so one container cannot
 * be given a proxy to one primary) and no `remap` (the cluster's slots are its map: `migrate` is the change).
 */
export const CLUSTER_FAULTS: readonly FaultKind[] = [
  'kill',
  'hang',
  'restart',
  'evict',
  'failover',
  'dynamo',
  'stream',
  'slow',
  'stall',
  'maxmemory',
  'migrate',
  'blackhole',
];

/** Faults that are not given a slot of their own but overlap the node faults. */
export const OVERLAY_FAULTS: ReadonlySet<FaultKind> = new Set(['slow']);

export const FAULT_DESCRIPTIONS: Record<FaultKind, string> = {
  kill: 'kill -9 a shard, restart it empty',
  hang: 'SIGSTOP a shard, SIGCONT it (returns with its old entries)',
  restart: 'a shard down, back with its data (SAVE, kill -9, restart loading the dump)',
  evict: 'eviction storm: tiny maxmemory with allkeys-lru on a shard',
  failover: 'replica promoted: replication cut, primary killed, replica promoted, endpoint moved',
  dynamo: 'DynamoDB errors (before and after commit), timeouts and latency injected at the SDK',
  stream: 'Streams consumer paused, then resumed (lag)',
  partition: 'one container partitioned from one shard (others still reach it)',
  slow: 'DynamoDB slow but healthy (latency spikes, no errors), overlapping each node fault',
  stall: 'SIGSTOP a shard for ⅓–1⅓ command timeouts (100–400 ms at 300 ms), SIGCONT; repeated through the slot',
  maxmemory: 'small maxmemory on a shard under a random eviction policy, the working set larger than memory',
  remap: 'two shard maps live (new containers on another map), then a rollback (new containers on the first map)',
  blackhole: "DynamoDB black-holed at the socket: the containers' proxy accepts and never answers, open sockets go silent",
  migrate: 'cluster mode: slots of one primary migrated to another under load (IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE)',
};

/** Faults that make a cache node unreachable or lose entries (a strict-policy refusal is expected during them). */
export const CACHE_FAULTS: ReadonlySet<FaultKind> = new Set([
  'kill',
  'hang',
  'restart',
  'evict',
  'failover',
  'partition',
  'stall',
  'maxmemory',
]);

/** Faults of DynamoDB itself: an error in an operation overlapping one is not a failed request. */
export const DYNAMO_FAULTS: ReadonlySet<FaultKind> = new Set(['dynamo', 'blackhole']);

export type DynamoFaultMode = 'off' | 'errors' | 'slow';

export interface FaultWindow {
  kind: FaultKind;
  /** Which shard / container. */
  target: string;
  start: number;
  /** When the fault was lifted (the node answers again, the feed resumed, injection stopped). */
  end: number;
  /** A node fault: the shard it was on (`shard0`…), as records name it in `node`. */
  node?: string;
  /** A node fault that only some containers see (a partition): those; absent: every container. */
  clients?: string[];
  /**
   * A partition: the address it cut (container w0's own route to the node, a proxy). Another
   * container that asked the node at that address (the node under w0's shard map, which it fences
   * while it cannot tell that map's node is its own: ARCHITECTURE.md, "Two maps live at once") was
   * cut from it too.
   */
  address?: string;
  /**
   * A node fault: when the node first answered a PING again after the fault was lifted (the nemesis
   * pings it until it does). A strict refusal on the node is excused until this + one command timeout.
   */
  answeredAt?: number;
  detail?: Record<string, unknown>;
}

/** One out-of-band write followed by probe reads through the cache until one returns it. */
export interface OobSample {
  key: string;
  hot: boolean;
  value: string;
  writeEnd: number;
  /** End of the first probe read that returned the value; undefined if superseded or never seen. */
  seenAt?: number;
  outcome: 'seen' | 'superseded' | 'timeout' | 'error';
}

/**
 * What one operation's DynamoDB calls cost it and how it waited, as the containers (worker.ts) and
 * the probe (harness.ts) keep it while the operation runs.
 */
export interface CallAccount {
  dynamoMs: number;
  dynamoCalls: number;
  /** Per item id: the [t0, t1] of each GetItem / BatchGetItem call that read it. */
  readSpans: Map<string, [number, number][]>;
  /** Polls spent waiting for another reader's fill (the protocol's leaseWait hook). */
  leaseWaits: number;
}

export const newCallAccount = (): CallAccount => ({ dynamoMs: 0, dynamoCalls: 0, readSpans: new Map(), leaseWaits: 0 });

/** One DynamoDB call from t0 to t1 (its SDK retries and any injected latency included), and the items it read. */
export function recordCall(account: CallAccount, readIds: readonly string[], t0: number, t1: number): void {
  account.dynamoMs += t1 - t0;
  account.dynamoCalls++;
  for (const id of new Set(readIds)) {
    let spans = account.readSpans.get(id);
    if (!spans) account.readSpans.set(id, (spans = []));
    spans.push([t0, t1]);
  }
}

/** A record's read spans of `id` and lease waits, each only when there are any. */
export function waitFields(account: CallAccount, id: string): Pick<OpRecord, 'dynamoReadSpans' | 'leaseWaits'> {
  const spans = account.readSpans.get(id);
  return { ...(spans?.length ? { dynamoReadSpans: spans } : {}), ...(account.leaseWaits > 0 ? { leaseWaits: account.leaseWaits } : {}) };
}
