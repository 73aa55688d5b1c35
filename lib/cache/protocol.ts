import type { WritePolicy } from '../config.ts';
import { CacheUnavailableError, errorMessage, refusedForSure } from '../errors.ts';
import { BudgetSpent, NoAnswer, within } from './deadline.ts';
import type { CacheMetrics } from '../metrics.ts';
import type { CacheNode, MapTrust } from './node.ts';
import {
  END_WRITE_REPLY,
  ENTRY_TAG_LENGTH,
  INVALIDATE_REPLY,
  LEASE_REPLY,
  REGISTRY_KEY,
  type LeaseReply,
  type WriteEnding,
} from './scripts.ts';
import { redirectOf, slotOf } from './slots.ts';
import { randomToken } from './tokens.ts';
import { deadlineClock } from '../clock.ts';

/** What the cache holds for an item: its encoded entry (codec.ts `encodeEntry`), or ABSENT (R8). */
export interface CacheEntry {
  data: string;
  /** The item's version ('' when absent). */
  version: string;
  /** The canonical digest of the item's content (digest.ts), kept with the entry; '' when absent or unknown. */
  digest?: string;
}

export const ABSENT = '-';
export const absentEntry: CacheEntry = { data: ABSENT, version: '', digest: '' };

/**
 * What a stream record says an item now is (issue 13): its new image's version and digest, or
 * deleted. An invalidation told this leaves an entry that holds exactly that alone.
 */
export type RecordedState = { kind: 'item'; version: string; digest: string } | { kind: 'absent' };

/** What an invalidation did: the entry dropped, or kept because it already held the recorded state. */
export type InvalidationOutcome = 'invalidated' | 'kept';

/** hit: served by the cache; miss: read from DynamoDB through the cache; bypass: cache not used. */
export type ReadSource = 'hit' | 'miss' | 'bypass';

export interface ReadOutcome {
  entry: CacheEntry;
  source: ReadSource;
}

/**
 * Seams for tests that force an interleaving (R1–R9): each is awaited at its point of the protocol,
 * so a test can hold one client there while others run.
 * @internal
 */
export interface ProtocolHooks {
  /** A reader holds a lease and is about to read DynamoDB. */
  afterLease?(redisKey: string): Promise<void> | void;
  /** A reader found another reader's lease and waits for its fill (once per poll). */
  leaseWait?(redisKey: string): void;
  /** A reader found a writer's fence and waits for the writer's store (once per poll). */
  fenceWait?(redisKey: string): void;
  /** A reader has read DynamoDB and is about to fill. */
  beforeFill?(redisKey: string): Promise<void> | void;
  /** A reader's fill was answered: stored, or refused because its lease did not survive. */
  afterFill?(redisKey: string, stored: boolean): Promise<void> | void;
  /** A writer raised its fence and is about to call DynamoDB. */
  beforeCommit?(redisKey: string): Promise<void> | void;
  /** A writer's DynamoDB call is over and it is about to end its write on the cache. */
  afterCommit?(redisKey: string): Promise<void> | void;
}

export interface ProtocolSettings {
  /** What the cache may cost a request before it is served around the node (G3). */
  commandTimeoutMs: number;
  leaseMs: number;
  /** How long a writer's DynamoDB work may take, all calls together; the store enforces it. */
  commitMs: number;
  /** How long a writer's fence holds: its commit time, plus the begin's own travel, plus a margin. */
  fenceMs: number;
  writePolicy: WritePolicy;
  hooks?: ProtocolHooks;
  /** Counts of waits, fills and write outcomes (lib/metrics.ts). */
  metrics?: CacheMetrics;
}

/** The hint a writer's begin returns: the cached version (0 = cached as absent), if known. */
export type VersionHint = number | undefined;

/** What a writer's commit is given: the cached version as a hint, and when it must be over (ms since the epoch). */
export interface CommitContext {
  hint: VersionHint;
  deadline: number;
}

export interface CommitOutcome<T> {
  result: T;
  /** The entry to store when the writer had the key to itself; undefined = only invalidate. */
  entry: CacheEntry | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `op`'s answer, or a rejection once `deadline` passes (see within). */
function before<T>(node: CacheNode, deadline: number, op: () => Promise<T>): Promise<T> {
  return within(node.address, deadline, op);
}

/** Marks the node down for a real failure; a spent budget says nothing about the node. */
function failed(node: CacheNode, err: unknown, during: string): void {
  if (!(err instanceof BudgetSpent)) node.fail(err, during);
}

async function ensureConnected(node: CacheNode, deadline: number): Promise<void> {
  const asked = deadlineClock();
  // A connection made but not yet ready (a cold start whose handshake or ready check is slow) is a
  // node that did not answer in time, a suspicion; one being (re)made after a refusal or a close is
  // not, whichever of the two waits ran out first.
  const handshaking = (): boolean => node.client.status === 'connect' || node.client.status === 'ready';
  let ready: boolean;
  try {
    ready = await before(node, deadline, () => node.connected());
  } catch (err) {
    if (err instanceof NoAnswer && !handshaking()) throw new Error(`not connected (${node.client.status})`);
    throw err;
  }
  if (ready) return;
  if (handshaking()) throw new NoAnswer(node.address, deadline - asked);
  throw new Error(`not connected (${node.client.status})`);
}

/**
 * The node a redirect named failed (cluster mode): the key lives there now, so what is owed for it (a
 * dirty key, R6) is owed there, not to the node that redirected.
 */
class RedirectedFailure extends Error {
  constructor(
    readonly node: CacheNode,
    readonly failure: unknown,
  ) {
    super(errorMessage(failure), { cause: failure });
  }
}

/** The node a failed operation on `node` failed at: the one a redirect named, if the failure was there. */
function failedAt(node: CacheNode, err: unknown): { node: CacheNode; failure: unknown } {
  return err instanceof RedirectedFailure ? { node: err.node, failure: err.failure } : { node, failure: err };
}

/**
 * `op` on `node`; in cluster mode, when the node redirects it (the key's slot moved, or the key is being
 * migrated), once more on the node the redirect names (after ASKING, for ASK). Returns the node that
 * answered, which holds the key now.
 */
async function followingRedirect<T>(
  node: CacheNode,
  deadline: number,
  op: (n: CacheNode) => Promise<T>,
): Promise<{ node: CacheNode; value: T }> {
  try {
    return { node, value: await before(node, deadline, () => op(node)) };
  } catch (err) {
    const next = node.redirected(err);
    if (next === undefined) throw err;
    try {
      await ensureConnected(next.node, deadline);
      // ASKING holds for the connection's next command only: sent in the same turn as `op`, nothing comes between.
      if (next.asking) next.node.client.asking().catch(() => undefined);
      return { node: next.node, value: await before(next.node, deadline, () => op(next.node)) };
    } catch (again) {
      // The node redirected to failed, not the one that redirected: the caller learns which.
      failed(next.node, again, 'redirected');
      throw new RedirectedFailure(next.node, again);
    }
  }
}

/** The refusal of a strict write or invalidation that no replica of `node` acknowledged (cluster mode, `WAIT`). */
function unreplicated(node: CacheNode, what: string, nothingWritten: boolean): CacheUnavailableError {
  return new CacheUnavailableError(
    `no replica of cache node ${node.address} acknowledged the ${what} in time${nothingWritten ? '; nothing was written' : ''}`,
  );
}

/** An entry as read from the node: its payload when it carries the epoch's tag, else undefined (R9). */
function ofEpoch(raw: string | null, tag: string): string | undefined {
  return raw !== null && raw.startsWith(tag) ? raw.slice(tag.length) : undefined;
}

/**
 * The hit path's read: the entry's payload when this client may serve it. In shards mode that is an
 * entry of its own map's generation once that generation is trusted, or another map's entry whose
 * record on the node held its generation at the last view (lib/cache/maps.ts). While another map is
 * live, the own map's record is read in the same round trip and must still hold this client's
 * generation (a record lost since the last view: registered again).
 */
async function readHit(node: CacheNode, key: string, deadline: number): Promise<string | undefined> {
  const tag = node.epochTag;
  const map = node.map;
  if (map !== undefined && map.othersLive) return readHitWithRecord(node, map, tag, key, deadline);
  return servable(node, map, tag, await node.read(key, 'd', deadline));
}

/** readHit while another map is live: the entry and the own map's record, in one round trip. */
async function readHitWithRecord(node: CacheNode, map: MapTrust, tag: string, key: string, deadline: number): Promise<string | undefined> {
  const [raw, record] = await Promise.all([node.read(key, 'd', deadline), node.read(REGISTRY_KEY, map.mapId, deadline)]);
  if (record === null || !record.startsWith(`${map.generation}:`)) {
    map.lost();
    return undefined;
  }
  return servable(node, map, tag, raw);
}

/**
 * What readHit checks once the entry is read (synchronous, so CacheProtocol.read awaits the node's
 * answer itself: one promise fewer on every hit). `map` and `tag` as they were when the read was sent.
 */
function servable(node: CacheNode, map: MapTrust | undefined, tag: string, raw: string | null): string | undefined {
  if (map === undefined) return ofEpoch(raw, tag);
  if (raw === null) return undefined;
  const now = node.now();
  if (raw.startsWith(tag)) return map.trusted(now) ? raw.slice(tag.length) : undefined;
  const run = node.runTag;
  if (!raw.startsWith(run) || raw.length < ENTRY_TAG_LENGTH) return undefined;
  return map.accepts(raw.slice(run.length, ENTRY_TAG_LENGTH), now) ? raw.slice(ENTRY_TAG_LENGTH) : undefined;
}

/** What a writer's begin on one node gave: whether its fence is up, the cached version, the tag it wrote under. */
interface Begin {
  /** The node that answered (cluster mode: the one a redirect named), or the one asked. */
  node: CacheNode;
  begun: boolean;
  hint: VersionHint;
  tag: string;
  /**
   * When the begin that raised the fence was sent (ms since the epoch; 0 when none was answered): the
   * fence starts when the script runs, never before it was sent, however late its answer is handled
   * (a starved process, lib/cache/deadline.ts `within`).
   */
  beganAt: number;
  failure: unknown;
}

/** A lease this reader holds: the tagged value FILL and RELEASE compare with. */
interface Lease {
  node: CacheNode;
  key: string;
  value: string;
  /** The epoch's tag when the lease was granted: the fill is tagged with it. */
  tag: string;
}

/**
 * Read, fill, write and invalidate: where G1, G5 and R1–R8 are enforced, by the scripts in
 * scripts.ts. A failing node never fails a request: the caller is served from DynamoDB (G3).
 */
export class CacheProtocol {
  constructor(private readonly settings: ProtocolSettings) {}

  async read(node: CacheNode | undefined, key: string, ttlMs: number, load: () => Promise<CacheEntry>): Promise<ReadOutcome> {
    if (node === undefined) return { entry: await load(), source: 'bypass' };
    // Readable implies writable (up, not down): the hit path asks the node's state once.
    if (node.readable) {
      // One budget for everything the request asks of the node before it reads DynamoDB.
      const now = deadlineClock();
      const deadline = now + this.settings.commandTimeoutMs;
      try {
        // Cluster mode: a node not verified for a check interval (an idle container) is verified
        // before its entries are trusted (node.ts verifyDue); a node in use never waits here.
        if (node.verifyDue) await node.reverify(deadline);
        let data: string | undefined;
        if (node.readable) {
          // readHit inlined for the common case (no other map live): the node's answer awaited here.
          const tag = node.epochTag;
          const map = node.map;
          data =
            map !== undefined && map.othersLive
              ? await readHitWithRecord(node, map, tag, key, deadline)
              : servable(node, map, tag, await node.read(key, 'd', deadline, now));
        }
        if (data !== undefined) return { entry: { data, version: '' }, source: 'hit' };
      } catch (err) {
        failed(node, err, 'read');
        // Cluster mode: retired from the topology while the read waited: the key's owner now is asked.
        const next = node.successorFor(key);
        if (next !== undefined) return this.missed(next, key, ttlMs, load, deadlineClock() + this.settings.commandTimeoutMs);
        return { entry: await load(), source: 'bypass' };
      }
      return this.missed(node, key, ttlMs, load, deadline);
    }
    if (!node.writable) return { entry: await load(), source: 'bypass' };
    return this.missed(node, key, ttlMs, load, deadlineClock() + this.settings.commandTimeoutMs);
  }

  /** The miss path: a lease (one filler per key, G5), a consistent read, a fill only if the lease survived. */
  private async missed(node: CacheNode, key: string, ttlMs: number, load: () => Promise<CacheEntry>, budget: number): Promise<ReadOutcome> {
    const { leaseMs, hooks, commandTimeoutMs } = this.settings;
    const token = randomToken();
    const waitUntil = deadlineClock() + leaseMs;
    let waitingOn: string | undefined;
    let pause = 2;
    // The first lease shares the request's budget; each poll after a pause gets its own (waiting for
    // another reader's fill is not the node's cost).
    let deadline = budget;
    let at = node;
    let rerouted = false;
    for (;;) {
      let asked: { reply: LeaseReply; lease: Lease };
      try {
        asked = await this.lease(at, key, token, deadline);
      } catch (err) {
        failed(at, err, 'lease');
        // Cluster mode: retired from the topology while the poll waited: the key's owner now, once.
        const next = rerouted ? undefined : at.successorFor(key);
        if (next === undefined) return { entry: await load(), source: 'bypass' };
        at = next;
        rerouted = true;
        waitingOn = undefined;
        deadline = deadlineClock() + commandTimeoutMs;
        continue;
      }
      const { reply, lease } = asked;
      switch (reply[0]) {
        case LEASE_REPLY.entry:
          return { entry: { data: reply[1].slice(lease.tag.length), version: '' }, source: 'hit' };
        case LEASE_REPLY.fenced:
        case LEASE_REPLY.unsealed:
        case LEASE_REPLY.unregistered:
          // The node's epoch is settling, its seal is gone (the node is being sealed again), or this
          // map's generation there is new or gone (registered again): read
          // around the cache, fill nothing.
          return { entry: await load(), source: 'miss' };
        case LEASE_REPLY.writing: {
          // A writer is in flight: its end stores the item it wrote (or drops the entry, and then the
          // next LEASE grants a lease). Wait for it, as for a filler, at most until its fence ends and
          // within the same wait as a lease: what this returns is then either the writer's own item or
          // a read after its fence came down, never older than an acknowledged write (G1). The lease
          // time bounds it as it bounds the wait for a filler: a writer that died in flight leaves its
          // fence up until its deadline, and costs a reader no more than a filler that died would.
          const left = Math.min(waitUntil - deadlineClock(), reply[1]);
          if (left <= 0) return { entry: await load(), source: 'miss' };
          // The writer's begin removed the lease this reader may have waited on: the filler it waits
          // for next (if the writer drops its entry) is the first it meets after, within the same wait.
          waitingOn = undefined;
          hooks?.fenceWait?.(key);
          await sleep(Math.min(pause, left));
          pause = Math.min(pause * 2, 25);
          deadline = deadlineClock() + commandTimeoutMs;
          continue;
        }
        case LEASE_REPLY.leased: {
          // Another reader is filling: wait for its fill rather than read DynamoDB too (G5). For one
          // filler only: when its lease gives way to another's (an invalidation or a writer refused
          // its fill), waiting again could cost a second DynamoDB read's time: read it ourselves.
          const left = waitUntil - deadlineClock();
          if (waitingOn === undefined) this.settings.metrics?.count('LeaseWaits');
          waitingOn ??= reply[2];
          if (left <= 0 || reply[2] !== waitingOn) return { entry: await load(), source: 'miss' };
          hooks?.leaseWait?.(key);
          await sleep(Math.min(pause, left, reply[1]));
          pause = Math.min(pause * 2, 25);
          deadline = deadlineClock() + commandTimeoutMs;
          continue;
        }
        case LEASE_REPLY.granted: {
          let entry: CacheEntry;
          try {
            await hooks?.afterLease?.(key);
            entry = await load();
          } catch (err) {
            await this.release(lease);
            throw err;
          }
          await this.fill(lease, entry, ttlMs, deadlineClock() + commandTimeoutMs);
          return { entry, source: 'miss' };
        }
      }
    }
  }

  /** LEASE for one key (the miss path's first step, for read and readMany alike). */
  private async lease(node: CacheNode, key: string, token: string, deadline: number): Promise<{ reply: LeaseReply; lease: Lease }> {
    await ensureConnected(node, deadline);
    const tag = node.epochTag;
    // Cluster mode: the scripts cannot see the epoch's seal (another slot), so its settle is kept here.
    if (node.settlesLocally) return { reply: [LEASE_REPLY.fenced, 0], lease: { node, key, value: tag + token, tag } };
    // Cluster mode: a node idle for a check interval is verified again before its entries are trusted
    // (as read() does), also for a reader that polls a lease while the node turns up (rereview finding 3).
    const trusted = node.readable && !node.verifyDue ? '1' : '0';
    const map = node.map;
    const reply = await before(node, deadline, () =>
      node.client.wtLease(
        key,
        node.sealKeyFor(key),
        node.registryKeyFor(key),
        token,
        this.settings.leaseMs,
        trusted,
        tag,
        map?.mapId ?? '',
        map?.generation ?? '',
        map?.waitMs ?? 0,
        map?.expiryMs ?? 0,
      ),
    );
    if (reply[0] === LEASE_REPLY.unsealed) node.unsealed();
    if (reply[0] === LEASE_REPLY.unregistered) map?.lost();
    return { reply, lease: { node, key, value: tag + token, tag } };
  }

  /** FILL under a lease (the miss path's last step): stored only if the lease survived; a failure is the node's. */
  private async fill(lease: Lease, entry: CacheEntry, ttlMs: number, deadline: number): Promise<void> {
    const { node, key } = lease;
    const hooks = this.settings.hooks;
    this.settings.metrics?.count('FillReads');
    try {
      await hooks?.beforeFill?.(key);
      if (node.settlesLocally) return;
      const stored = await before(node, deadline, () =>
        node.client.wtFill(key, node.sealKeyFor(key), lease.value, lease.tag + entry.data, entry.version, ttlMs, entry.digest ?? ''),
      );
      await hooks?.afterFill?.(key, stored === 1);
    } catch (err) {
      failed(node, err, 'fill');
    }
  }

  /**
   * Up to 100 keys: one pipelined round trip per node for the hits (ioredis auto-pipelining), one
   * for the leases, one load for everything else, one for the fills. Keys another reader is
   * filling are read from DynamoDB without waiting.
   */
  async readMany(
    targets: { node: CacheNode | undefined; key: string }[],
    ttlMs: number,
    loadMany: (indexes: number[]) => Promise<CacheEntry[]>,
  ): Promise<ReadOutcome[]> {
    const out: (ReadOutcome | undefined)[] = new Array(targets.length);
    const sources: ReadSource[] = targets.map(() => 'bypass');
    const { commandTimeoutMs } = this.settings;
    const deadline = deadlineClock() + commandTimeoutMs;
    await Promise.all(
      targets.map(async ({ node, key }, i) => {
        if (node === undefined || !node.readable) return;
        try {
          if (node.verifyDue) await node.reverify(deadline);
          if (!node.readable) return;
          const data = await readHit(node, key, deadline);
          if (data !== undefined) out[i] = { entry: { data, version: '' }, source: 'hit' };
        } catch (err) {
          failed(node, err, 'read');
        }
      }),
    );
    const leases = new Map<number, Lease>();
    /** LEASE for the i-th key on `node`; false when the node failed. */
    const ask = async (node: CacheNode, key: string, i: number, by: number): Promise<boolean> => {
      try {
        const { reply, lease } = await this.lease(node, key, randomToken(), by);
        if (reply[0] === LEASE_REPLY.entry) out[i] = { entry: { data: reply[1].slice(lease.tag.length), version: '' }, source: 'hit' };
        else {
          sources[i] = 'miss';
          if (reply[0] === LEASE_REPLY.granted) leases.set(i, lease);
        }
        return true;
      } catch (err) {
        failed(node, err, 'lease');
        return false;
      }
    };
    await Promise.all(
      targets.map(async ({ node, key }, i) => {
        if (out[i] !== undefined || node === undefined) return;
        // Cluster mode: a node retired from the topology while the hits or the lease waited: the key's owner now, once.
        const at = node.successorFor(key) ?? node;
        if (at.writable && (await ask(at, key, i, deadline))) return;
        const next = at.successorFor(key);
        if (next?.writable) await ask(next, key, i, deadlineClock() + commandTimeoutMs);
      }),
    );
    const pending = targets.map((_, i) => i).filter((i) => out[i] === undefined);
    if (pending.length > 0) {
      let loaded: CacheEntry[];
      try {
        loaded = await loadMany(pending);
      } catch (err) {
        await Promise.all([...leases.values()].map((lease) => this.release(lease)));
        throw err;
      }
      pending.forEach((i, n) => {
        out[i] = { entry: loaded[n] as CacheEntry, source: sources[i] as ReadSource };
      });
      const fillBy = deadlineClock() + commandTimeoutMs;
      await Promise.all([...leases].map(([i, lease]) => this.fill(lease, (out[i] as ReadOutcome).entry, ttlMs, fillBy)));
    }
    return out as ReadOutcome[];
  }

  /** Gives back a lease whose holder could not read DynamoDB (the request fails anyway: best effort). */
  private async release(lease: Lease): Promise<void> {
    try {
      await before(lease.node, deadlineClock() + this.settings.commandTimeoutMs, () => lease.node.client.wtRelease(lease.key, lease.value));
    } catch (err) {
      failed(lease.node, err, 'release');
    }
  }

  /**
   * A write: begin (set the entry aside, raise this writer's fence) → commit in DynamoDB, within the
   * commit time → end (store the new entry if the writer had the key to itself; put the old one back if
   * DynamoDB definitely refused the write; else drop it). A node believed down is probed first (a stall
   * must not cost writes). When the begin still cannot reach the node, the `strict` policy refuses the
   * write before anything is committed; `available` commits and leaves the key dirty for repair (G1's
   * documented bound).
   *
   * `others`: the key's nodes under the other live shard maps (lib/cache/maps.ts). Each is fenced the
   * same way, and only invalidated at the end (their maps' entries are not this writer's to store).
   */
  async write<T>(
    node: CacheNode | undefined,
    key: string,
    ttlMs: number,
    commit: (context: CommitContext) => Promise<CommitOutcome<T>>,
    others: readonly CacheNode[] = [],
  ): Promise<T> {
    const { hooks, commitMs, writePolicy, commandTimeoutMs } = this.settings;
    if (node === undefined) return (await commit({ hint: undefined, deadline: deadlineClock() + commitMs })).result;
    const stamp = randomToken();
    const begins = await Promise.all([node, ...others].map((n) => this.beginWrite(n, key, stamp)));
    // The nodes that answered (cluster mode: a redirect moves the write to the slot's new primary).
    const targets = begins.map((b) => b.node);
    const own = begins[0] as Begin;
    const refused = begins.findIndex((b) => !b.begun);
    if (refused === -1 && writePolicy === 'strict' && own.node.isCluster) {
      // Cluster mode: the fence counts once a replica has it, so no failover can lose it (README, per mode).
      let acknowledged = false;
      try {
        acknowledged = await own.node.replicated(deadlineClock() + commandTimeoutMs);
      } catch (err) {
        failed(own.node, err, 'wait-replica');
      }
      if (!acknowledged) {
        // Nothing was committed: the entry set aside goes back and the fence comes down.
        this.settings.metrics?.count('WriteRefused');
        await this.endWrite(own.node, key, stamp, 'restore', undefined, ttlMs, own.tag);
        throw unreplicated(own.node, "write's invalidation", true);
      }
    }
    if (refused !== -1) {
      const failure = (begins[refused] as Begin).failure;
      const address = (targets[refused] as CacheNode).address;
      if (writePolicy === 'strict') {
        this.settings.metrics?.count('WriteRefused');
        // Nothing is committed: whatever was set aside is put back.
        await Promise.all(begins.map((b) => (b.begun ? this.endWrite(b.node, key, stamp, 'restore', undefined, ttlMs, b.tag) : undefined)));
        throw new CacheUnavailableError(`cache node ${address} cannot be invalidated (${errorMessage(failure)}); nothing was written`, {
          cause: failure,
        });
      }
      for (const b of begins) if (!b.begun) b.node.dirty.add(key, `begin-write: ${errorMessage(b.failure)}`);
    }
    // Counted from the earliest begin's send: the fence, raised no earlier, outlasts the commit by the
    // begin's own travel time (at most the command timeout) plus a margin, even when the answer was
    // handled late. A replica's acknowledgement (strict, cluster mode) is waited for within the commit's
    // time, not added to it.
    const answered = begins.filter((b) => b.begun).map((b) => b.beganAt);
    const commitBy = (answered.length > 0 ? Math.min(...answered) : deadlineClock()) + commitMs;
    await hooks?.beforeCommit?.(key);
    let outcome: CommitOutcome<T>;
    try {
      outcome = await commit({ hint: own.hint, deadline: commitBy });
    } catch (err) {
      // R7: nothing new may be cached. A write DynamoDB definitely refused puts back what it set aside
      // (a rejected request changes nothing); one that failed otherwise may still have committed, so
      // its entry is dropped.
      const ending = refusedForSure(err) ? 'restore' : 'drop';
      await Promise.all(begins.map((b) => (b.begun ? this.endWrite(b.node, key, stamp, ending, undefined, ttlMs, b.tag) : undefined)));
      throw err;
    }
    await hooks?.afterCommit?.(key);
    // The writer's own map stores only where its generation is trusted (W passed, lib/cache/maps.ts);
    // the other maps' nodes are only invalidated.
    const store = outcome.entry !== undefined && own.node.mapTrusted;
    await Promise.all(
      begins.map((b, i) =>
        b.begun
          ? i === 0
            ? this.endWrite(b.node, key, stamp, store ? 'store' : 'drop', store ? outcome.entry : undefined, ttlMs, b.tag)
            : this.endWrite(b.node, key, stamp, 'drop', undefined, ttlMs, b.tag)
          : undefined,
      ),
    );
    return outcome.result;
  }

  /**
   * BEGIN_WRITE on one node (a node believed down is probed first; a redirect followed once); never
   * throws. Cluster mode: a node retired from the topology while the begin waited on it (a cold
   * start's seed, ARCHITECTURE.md "Cluster mode") hands the begin to the key's owner now, once.
   */
  private async beginWrite(node: CacheNode, key: string, stamp: string): Promise<Begin> {
    const begin = await this.beginOn(node, key, stamp);
    if (begin.begun) return begin;
    // A failover this container has not learnt yet (the old primary down or demoted): the topology
    // is asked before the write is refused or committed unfenced (cluster mode only).
    const next =
      begin.node.successorFor(key) ?? (await begin.node.ownerAfterRelearn(key, deadlineClock() + this.settings.commandTimeoutMs));
    return next === undefined ? begin : this.beginOn(next, key, stamp);
  }

  private async beginOn(node: CacheNode, key: string, stamp: string): Promise<Begin> {
    const { fenceMs, commandTimeoutMs } = this.settings;
    let failure: unknown = new Error('node is down');
    // A node down only for invalidations owed to it answers: the write begins there (node.ts owesOnly)
    // while the repair goes on.
    if (node.owesOnly) void node.probeNow();
    else if (!node.writable) await node.probeNow();
    if (node.writable || node.owesOnly) {
      // A verification in flight is waited for apart (its own commands are bounded): a primary that lost
      // its lowest slot to a migration seals again, and a strict write is not refused for that wait.
      await node.verification();
      const deadline = deadlineClock() + commandTimeoutMs;
      try {
        await ensureConnected(node, deadline);
        // The tag once the node is verified: the entry this writer stores carries it.
        let tag = '';
        let sentAt = 0;
        const began = await followingRedirect(node, deadline, (n) => {
          tag = n.epochTag;
          sentAt = deadlineClock();
          return n.client.wtBeginWrite(key, stamp, fenceMs, tag);
        });
        const hint = began.value === '' ? undefined : Number(began.value);
        return { node: began.node, begun: true, hint, tag, beganAt: sentAt, failure: undefined };
      } catch (err) {
        // Failed where a redirect led: the key is there, and so is its dirty entry (R6).
        const at = failedAt(node, err);
        if (at.node === node) failed(node, err, 'begin-write');
        return { node: at.node, begun: false, hint: undefined, tag: '', beganAt: 0, failure: at.failure };
      }
    }
    return { node, begun: false, hint: undefined, tag: '', beganAt: 0, failure };
  }

  private async endWrite(
    node: CacheNode,
    key: string,
    stamp: string,
    ending: WriteEnding,
    entry: CacheEntry | undefined,
    ttlMs: number,
    tag: string,
    rerouted = false,
  ): Promise<void> {
    // Cluster mode: while the epoch settles (kept by the client there) no writer stores or puts back.
    const end: WriteEnding = node.settlesLocally ? 'drop' : ending;
    try {
      const { value: reply } = await followingRedirect(node, deadlineClock() + this.settings.commandTimeoutMs, (n) =>
        n.client.wtEndWrite(
          key,
          n.sealKeyFor(key),
          stamp,
          randomToken(),
          end,
          tag + (entry?.data ?? ''),
          entry?.version ?? '',
          ttlMs,
          entry?.digest ?? '',
        ),
      );
      if (reply !== END_WRITE_REPLY.restored)
        this.settings.metrics?.count(reply === END_WRITE_REPLY.stored ? 'WriteStored' : 'WriteInvalidated');
    } catch (err) {
      // The fence raised at begin keeps fills off this key until it expires (strict's guarantee);
      // the key is also repaired before the node that holds it (a redirect's, if it failed there) is trusted again.
      const at = failedAt(node, err);
      if (at.node === node) failed(node, err, 'end-write');
      // Cluster mode: retired from the topology meanwhile: the entry is dropped on the key's owner now,
      // once (the writer's tag is the retired node's epoch, which the owner's clients do not trust).
      const next = rerouted ? undefined : at.node.successorFor(key);
      if (next !== undefined) return this.endWrite(next, key, stamp, 'drop', undefined, ttlMs, tag, true);
      at.node.dirty.add(key, `end-write: ${errorMessage(at.failure)}`);
    }
  }

  /**
   * Drops an entry (stream records, out-of-band changes) on its node and on its nodes under the other
   * live shard maps (`others`). Told what the record says the item now is (`recorded`), each node
   * leaves an entry that holds exactly that alone (INVALIDATE decides, atomically): 'kept' when every
   * node did. Under strict in cluster mode, an invalidation counts once a replica has it. Throws when
   * one cannot be reached, after trying them all; the caller makes the invalidation durable (a parked
   * record, Lambda's retry), so the key is not kept dirty here: a full dirty set would flush the node.
   * Cluster mode: `peers`, the other primaries, are asked at the same time whether they hold keys of
   * the key's slot (invalidateStray); no round trip is added. `heldNone` is told each that holds none.
   */
  async invalidate(
    node: CacheNode | undefined,
    key: string,
    recorded?: RecordedState,
    others: readonly CacheNode[] = [],
    peers: readonly CacheNode[] = [],
    heldNone?: (peer: CacheNode) => void,
  ): Promise<InvalidationOutcome> {
    if (node === undefined) return 'invalidated';
    const [results, strays] = await Promise.all([
      Promise.all([node, ...others].map((n) => this.invalidateOn(n, key, recorded))),
      Promise.all(peers.map((p) => this.invalidateStray(p, key, heldNone))),
    ]);
    const failure = results.find((r) => r instanceof CacheUnavailableError) ?? strays.find((r) => r !== undefined);
    if (failure !== undefined) throw failure;
    return results.every((r) => r === 'kept') ? 'kept' : 'invalidated';
  }

  /**
   * Cluster mode: `peer`, a primary besides the key's owner, and the keys of the key's slot it holds
   * (`CLUSTER COUNTKEYSINSLOT`, answered for any slot). Most hold none. A migration's target (importing)
   * takes the invalidation after `ASKING`; one that answers `ASK` still owns the slot (our topology
   * already names the target) and no longer holds the key. Any other keeps keys of a slot it no longer owns
   * (`CLUSTER DELSLOTS` deletes none) and refuses them to everyone (MOVED, CLUSTERDOWN); its entry,
   * tagged with its own epoch, is trusted again if the slot comes back there, so the invalidation does
   * not count (its record stays parked) until the slot is back there, where it is delivered, or those
   * keys are gone (ARCHITECTURE.md, "A slot with no owner"). A primary this container believes down, or
   * that cannot be asked, is not waited for: a stall of one primary costs only its own keys.
   */
  private async invalidateStray(
    peer: CacheNode,
    key: string,
    heldNone?: (peer: CacheNode) => void,
  ): Promise<CacheUnavailableError | undefined> {
    if (!peer.writable) return undefined;
    const slot = slotOf(key);
    const deadline = deadlineClock() + this.settings.commandTimeoutMs;
    let held: number;
    try {
      await ensureConnected(peer, deadline);
      held = Number(await before(peer, deadline, () => peer.client.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot))));
    } catch {
      return undefined;
    }
    if (!(held > 0)) {
      if (held === 0) heldNone?.(peer);
      return undefined;
    }
    try {
      // ASKING holds for the connection's next command only: sent in the same turn as the invalidation.
      peer.client.asking().catch(() => undefined);
      await before(peer, deadline, () => peer.client.wtInvalidate(key, randomToken()));
      return undefined;
    } catch (err) {
      // ASK: the node still owns the slot, migrating it away, and no longer holds the key.
      if (redirectOf(err)?.kind === 'ASK') return undefined;
      return new CacheUnavailableError(
        `cache node ${peer.address} holds keys of slot ${slot}, which it does not own (${errorMessage(err)}): the invalidation waits until the slot is back there or its keys are gone`,
        { cause: err },
      );
    }
  }

  /** INVALIDATE on one node; cluster mode: once more on the key's owner now when the node was retired from the topology meanwhile. */
  private async invalidateOn(
    node: CacheNode,
    key: string,
    recorded: RecordedState | undefined,
  ): Promise<InvalidationOutcome | CacheUnavailableError> {
    const outcome = await this.invalidateAt(node, key, recorded);
    const next = outcome instanceof CacheUnavailableError ? node.successorFor(key) : undefined;
    return next === undefined ? outcome : this.invalidateAt(next, key, recorded);
  }

  private async invalidateAt(
    node: CacheNode,
    key: string,
    recorded: RecordedState | undefined,
  ): Promise<InvalidationOutcome | CacheUnavailableError> {
    let failure: unknown = new Error('node is down');
    if (!node.writable && !node.owesOnly) await node.probeNow();
    if (node.writable || node.owesOnly) {
      const deadline = deadlineClock() + this.settings.commandTimeoutMs;
      let answered = node;
      try {
        await ensureConnected(node, deadline);
        const stamp = randomToken();
        const { node: n, value: reply } = await followingRedirect(node, deadline, (at) =>
          recorded === undefined
            ? at.client.wtInvalidate(key, stamp)
            : recorded.kind === 'absent'
              ? at.client.wtInvalidate(key, stamp, at.epochTag, '', '')
              : at.client.wtInvalidate(key, stamp, at.epochTag, recorded.version, recorded.digest),
        );
        answered = n;
        // The node our topology named redirected it (MOVED): it may still hold keys of the slot it lost
        // (CLUSTER DELSLOTS), which no peer check covers (it is not a peer of the key): checked as one.
        if (answered !== node) {
          const stray = await this.invalidateStray(node, key);
          if (stray !== undefined) return stray;
        }
        const outcome: InvalidationOutcome = reply === INVALIDATE_REPLY.kept ? 'kept' : 'invalidated';
        // Cluster mode, strict: an invalidation counts once a replica has it (README, per mode).
        if (
          this.settings.writePolicy !== 'strict' ||
          !answered.isCluster ||
          (await answered.replicated(deadlineClock() + this.settings.commandTimeoutMs))
        )
          return outcome;
        return unreplicated(answered, 'invalidation', false);
      } catch (err) {
        const at = failedAt(answered, err);
        failure = at.failure;
        if (at.node === answered) failed(answered, err, 'invalidate');
      }
    }
    return new CacheUnavailableError(`cache node ${node.address} cannot be invalidated: ${errorMessage(failure)}`, { cause: failure });
  }
}
