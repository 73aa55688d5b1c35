import type { WritePolicy } from '../config.ts';
import { CacheUnavailableError, errorMessage, refusedForSure } from '../errors.ts';
import { BudgetSpent, NoAnswer, within } from './deadline.ts';
import type { CacheNode } from './node.ts';
import { LEASE_REPLY, type LeaseReply, type WriteEnding } from './scripts.ts';
import { randomToken } from './tokens.ts';

/** What the cache holds for an item: its encoded entry (codec.ts `encodeEntry`), or ABSENT (R8). */
export interface CacheEntry {
  data: string;
  /** The item's version ('' when absent). */
  version: string;
}

export const ABSENT = '-';
export const absentEntry: CacheEntry = { data: ABSENT, version: '' };

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
  const asked = Date.now();
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
      // The node redirected to failed, not the one that redirected: the caller sees the redirect.
      failed(next.node, again, 'redirected');
      throw err;
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
    if (node === undefined || !node.writable) return { entry: await load(), source: 'bypass' };
    // One budget for everything the request asks of the node before it reads DynamoDB.
    const deadline = Date.now() + this.settings.commandTimeoutMs;
    if (node.readable) {
      const tag = node.epochTag;
      try {
        const data = ofEpoch(await node.read(key, 'd', deadline), tag);
        if (data !== undefined) return { entry: { data, version: '' }, source: 'hit' };
      } catch (err) {
        failed(node, err, 'read');
        return { entry: await load(), source: 'bypass' };
      }
    }
    return this.missed(node, key, ttlMs, load, deadline);
  }

  /** The miss path: a lease (one filler per key, G5), a consistent read, a fill only if the lease survived. */
  private async missed(node: CacheNode, key: string, ttlMs: number, load: () => Promise<CacheEntry>, budget: number): Promise<ReadOutcome> {
    const { leaseMs, hooks, commandTimeoutMs } = this.settings;
    const token = randomToken();
    const waitUntil = Date.now() + leaseMs;
    let waitingOn: string | undefined;
    let pause = 2;
    // The first lease shares the request's budget; each poll after a pause gets its own (waiting for
    // another reader's fill is not the node's cost).
    let deadline = budget;
    for (;;) {
      let asked: { reply: LeaseReply; lease: Lease };
      try {
        asked = await this.lease(node, key, token, deadline);
      } catch (err) {
        failed(node, err, 'lease');
        return { entry: await load(), source: 'bypass' };
      }
      const { reply, lease } = asked;
      switch (reply[0]) {
        case LEASE_REPLY.entry:
          return { entry: { data: reply[1].slice(lease.tag.length), version: '' }, source: 'hit' };
        case LEASE_REPLY.fenced:
        case LEASE_REPLY.unsealed:
          // Writers are in flight, the node's epoch is settling, or its seal is gone (the node is being
          // sealed again): read around the cache, fill nothing.
          return { entry: await load(), source: 'miss' };
        case LEASE_REPLY.leased: {
          // Another reader is filling: wait for its fill rather than read DynamoDB too (G5). For one
          // filler only: when its lease gives way to another's (an invalidation or a writer refused
          // its fill), waiting again could cost a second DynamoDB read's time: read it ourselves.
          const left = waitUntil - Date.now();
          waitingOn ??= reply[2];
          if (left <= 0 || reply[2] !== waitingOn) return { entry: await load(), source: 'miss' };
          hooks?.leaseWait?.(key);
          await sleep(Math.min(pause, left, reply[1]));
          pause = Math.min(pause * 2, 25);
          deadline = Date.now() + commandTimeoutMs;
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
          await this.fill(lease, entry, ttlMs, Date.now() + commandTimeoutMs);
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
    const trusted = node.readable ? '1' : '0';
    const reply = await before(node, deadline, () =>
      node.client.wtLease(key, node.sealKeyFor(key), token, this.settings.leaseMs, trusted, tag),
    );
    if (reply[0] === LEASE_REPLY.unsealed) node.unsealed();
    return { reply, lease: { node, key, value: tag + token, tag } };
  }

  /** FILL under a lease (the miss path's last step): stored only if the lease survived; a failure is the node's. */
  private async fill(lease: Lease, entry: CacheEntry, ttlMs: number, deadline: number): Promise<void> {
    const { node, key } = lease;
    const hooks = this.settings.hooks;
    try {
      await hooks?.beforeFill?.(key);
      if (node.settlesLocally) return;
      const stored = await before(node, deadline, () =>
        node.client.wtFill(key, node.sealKeyFor(key), lease.value, lease.tag + entry.data, entry.version, ttlMs),
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
    const deadline = Date.now() + commandTimeoutMs;
    await Promise.all(
      targets.map(async ({ node, key }, i) => {
        if (node === undefined || !node.readable) return;
        const tag = node.epochTag;
        try {
          const data = ofEpoch(await node.read(key, 'd', deadline), tag);
          if (data !== undefined) out[i] = { entry: { data, version: '' }, source: 'hit' };
        } catch (err) {
          failed(node, err, 'read');
        }
      }),
    );
    const leases = new Map<number, Lease>();
    await Promise.all(
      targets.map(async ({ node, key }, i) => {
        if (out[i] !== undefined || node === undefined || !node.writable) return;
        try {
          const { reply, lease } = await this.lease(node, key, randomToken(), deadline);
          if (reply[0] === LEASE_REPLY.entry) out[i] = { entry: { data: reply[1].slice(lease.tag.length), version: '' }, source: 'hit' };
          else {
            sources[i] = 'miss';
            if (reply[0] === LEASE_REPLY.granted) leases.set(i, lease);
          }
        } catch (err) {
          failed(node, err, 'lease');
        }
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
      const fillBy = Date.now() + commandTimeoutMs;
      await Promise.all([...leases].map(([i, lease]) => this.fill(lease, (out[i] as ReadOutcome).entry, ttlMs, fillBy)));
    }
    return out as ReadOutcome[];
  }

  /** Gives back a lease whose holder could not read DynamoDB (the request fails anyway: best effort). */
  private async release(lease: Lease): Promise<void> {
    try {
      await before(lease.node, Date.now() + this.settings.commandTimeoutMs, () => lease.node.client.wtRelease(lease.key, lease.value));
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
   */
  async write<T>(
    node: CacheNode | undefined,
    key: string,
    ttlMs: number,
    commit: (context: CommitContext) => Promise<CommitOutcome<T>>,
  ): Promise<T> {
    const { hooks, fenceMs, commitMs, writePolicy, commandTimeoutMs } = this.settings;
    if (node === undefined) return (await commit({ hint: undefined, deadline: Date.now() + commitMs })).result;
    const stamp = randomToken();
    let begun = false;
    let hint: VersionHint;
    let failure: unknown = new Error('node is down');
    if (!node.writable) await node.probeNow();
    // The epoch's tag once the node is verified: the entry this writer stores carries it.
    let tag = '';
    let beganAt = 0;
    if (node.writable) {
      const deadline = Date.now() + commandTimeoutMs;
      try {
        await ensureConnected(node, deadline);
        const began = await followingRedirect(node, deadline, (n) => {
          tag = n.epochTag;
          return n.client.wtBeginWrite(key, stamp, fenceMs, tag);
        });
        node = began.node;
        beganAt = Date.now();
        hint = began.value === '' ? undefined : Number(began.value);
        begun = true;
      } catch (err) {
        failure = err;
        failed(node, err, 'begin-write');
      }
    }
    if (begun && writePolicy === 'strict') {
      // Cluster mode: the fence counts once a replica has it, so no failover can lose it (README, per mode).
      let acknowledged = false;
      try {
        acknowledged = await node.replicated(Date.now() + commandTimeoutMs);
      } catch (err) {
        failed(node, err, 'wait-replica');
      }
      if (!acknowledged) {
        // Nothing was committed: the entry set aside goes back and the fence comes down.
        await this.endWrite(node, key, stamp, 'restore', undefined, ttlMs, tag);
        throw unreplicated(node, "write's invalidation", true);
      }
    }
    if (!begun) {
      if (writePolicy === 'strict') {
        throw new CacheUnavailableError(
          `cache node ${node.address} cannot be invalidated (${errorMessage(failure)}); nothing was written`,
          {
            cause: failure,
          },
        );
      }
      node.dirty.add(key, `begin-write: ${errorMessage(failure)}`);
    }
    // Counted from the begin's answer: the fence, raised before it, outlasts the commit by the begin's
    // own travel time (at most the command timeout) plus a margin. A replica's acknowledgement (strict,
    // cluster mode) is waited for within the commit's time, not added to it.
    const commitBy = (begun ? beganAt : Date.now()) + commitMs;
    await hooks?.beforeCommit?.(key);
    let outcome: CommitOutcome<T>;
    try {
      outcome = await commit({ hint, deadline: commitBy });
    } catch (err) {
      // R7: nothing new may be cached. A write DynamoDB definitely refused puts back what it set aside
      // (a rejected request changes nothing); one that failed otherwise may still have committed, so
      // its entry is dropped.
      if (begun) await this.endWrite(node, key, stamp, refusedForSure(err) ? 'restore' : 'drop', undefined, ttlMs, tag);
      throw err;
    }
    await hooks?.afterCommit?.(key);
    if (begun) await this.endWrite(node, key, stamp, outcome.entry ? 'store' : 'drop', outcome.entry, ttlMs, tag);
    return outcome.result;
  }

  private async endWrite(
    node: CacheNode,
    key: string,
    stamp: string,
    ending: WriteEnding,
    entry: CacheEntry | undefined,
    ttlMs: number,
    tag: string,
  ): Promise<void> {
    // Cluster mode: while the epoch settles (kept by the client there) no writer stores or puts back.
    const end: WriteEnding = node.settlesLocally ? 'drop' : ending;
    try {
      await followingRedirect(node, Date.now() + this.settings.commandTimeoutMs, (n) =>
        n.client.wtEndWrite(key, n.sealKeyFor(key), stamp, randomToken(), end, tag + (entry?.data ?? ''), entry?.version ?? '', ttlMs),
      );
    } catch (err) {
      // The fence raised at begin keeps fills off this key until it expires (strict's guarantee);
      // the key is also repaired before the node is trusted again.
      failed(node, err, 'end-write');
      node.dirty.add(key, `end-write: ${errorMessage(err)}`);
    }
  }

  /**
   * Drops an entry (stream records, out-of-band changes). Throws when the node cannot be reached; the
   * caller makes the invalidation durable (a parked record, Lambda's retry), so the key is not kept
   * dirty here: a full dirty set would flush the node.
   */
  async invalidate(node: CacheNode | undefined, key: string): Promise<void> {
    if (node === undefined) return;
    let failure: unknown;
    if (!node.writable) await node.probeNow();
    if (node.writable) {
      const deadline = Date.now() + this.settings.commandTimeoutMs;
      let answered = node;
      try {
        await ensureConnected(node, deadline);
        answered = (await followingRedirect(node, deadline, (n) => n.client.wtInvalidate(key, randomToken()))).node;
        // Cluster mode, strict: an invalidation counts once a replica has it (README, per mode).
        if (this.settings.writePolicy !== 'strict' || (await answered.replicated(Date.now() + this.settings.commandTimeoutMs))) return;
      } catch (err) {
        failure = err;
        failed(answered, err, 'invalidate');
      }
      if (failure === undefined) throw unreplicated(answered, 'invalidation', false);
    }
    failure ??= new Error('node is down');
    throw new CacheUnavailableError(`cache node ${node.address} cannot be invalidated: ${errorMessage(failure)}`, { cause: failure });
  }
}
