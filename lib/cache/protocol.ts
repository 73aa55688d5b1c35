import { CacheUnavailableError, errorMessage } from '../errors.ts';
import type { WritePolicy } from '../config.ts';
import type { CacheNode } from './node.ts';
import { randomToken } from './tokens.ts';
import { BudgetSpent, within } from './deadline.ts';

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
  /** How long a writer's fence holds: longer than any DynamoDB write the store can make. */
  fenceMs: number;
  writePolicy: WritePolicy;
  hooks?: ProtocolHooks;
}

/** The hint a writer's begin returns: the cached version (0 = cached as absent), if known. */
export type VersionHint = number | undefined;

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
  if (!(await before(node, deadline, () => node.connected()))) throw new Error(`not connected (${node.client.status})`);
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
      try {
        const data = await node.read(key, 'd', deadline);
        if (data !== null) return { entry: { data, version: '' }, source: 'hit' };
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
      let reply;
      try {
        await ensureConnected(node, deadline);
        reply = await before(node, deadline, () =>
          node.client.wtLease(key, node.settleKeyFor(key), token, leaseMs, node.readable ? '1' : '0'),
        );
      } catch (err) {
        failed(node, err, 'lease');
        return { entry: await load(), source: 'bypass' };
      }
      switch (reply[0]) {
        case 1:
          return { entry: { data: reply[1], version: '' }, source: 'hit' };
        case 2:
          // Writers are in flight, or the node's epoch is settling: read around the cache, fill nothing.
          return { entry: await load(), source: 'miss' };
        case 3: {
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
        case 0: {
          let entry: CacheEntry;
          try {
            await hooks?.afterLease?.(key);
            entry = await load();
          } catch (err) {
            await this.release(node, key, token);
            throw err;
          }
          await hooks?.beforeFill?.(key);
          try {
            const stored = await before(node, Date.now() + commandTimeoutMs, () =>
              node.client.wtFill(key, token, entry.data, entry.version, ttlMs),
            );
            await hooks?.afterFill?.(key, stored === 1);
          } catch (err) {
            failed(node, err, 'fill');
          }
          return { entry, source: 'miss' };
        }
      }
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
        try {
          const data = await node.read(key, 'd', deadline);
          if (data !== null) out[i] = { entry: { data, version: '' }, source: 'hit' };
        } catch (err) {
          failed(node, err, 'read');
        }
      }),
    );
    const tokens = new Map<number, string>();
    await Promise.all(
      targets.map(async ({ node, key }, i) => {
        if (out[i] !== undefined || node === undefined || !node.writable) return;
        try {
          await ensureConnected(node, deadline);
          const token = randomToken();
          const reply = await before(node, deadline, () =>
            node.client.wtLease(key, node.settleKeyFor(key), token, this.settings.leaseMs, node.readable ? '1' : '0'),
          );
          if (reply[0] === 1) out[i] = { entry: { data: reply[1], version: '' }, source: 'hit' };
          else {
            sources[i] = 'miss';
            if (reply[0] === 0) tokens.set(i, token);
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
        await Promise.all(
          [...tokens].map(([i, token]) => {
            const t = targets[i] as { node: CacheNode; key: string };
            return this.release(t.node, t.key, token);
          }),
        );
        throw err;
      }
      pending.forEach((i, n) => {
        out[i] = { entry: loaded[n] as CacheEntry, source: sources[i] as ReadSource };
      });
      const fillBy = Date.now() + commandTimeoutMs;
      await Promise.all(
        [...tokens].map(async ([i, token]) => {
          const t = targets[i] as { node: CacheNode; key: string };
          const entry = (out[i] as ReadOutcome).entry;
          try {
            await this.settings.hooks?.beforeFill?.(t.key);
            const stored = await before(t.node, fillBy, () => t.node.client.wtFill(t.key, token, entry.data, entry.version, ttlMs));
            await this.settings.hooks?.afterFill?.(t.key, stored === 1);
          } catch (err) {
            failed(t.node, err, 'fill');
          }
        }),
      );
    }
    return out as ReadOutcome[];
  }

  /** Gives back a lease whose holder could not read DynamoDB (the request fails anyway: best effort). */
  private async release(node: CacheNode, key: string, token: string): Promise<void> {
    try {
      await before(node, Date.now() + this.settings.commandTimeoutMs, () => node.client.wtRelease(key, token));
    } catch (err) {
      failed(node, err, 'release');
    }
  }

  /**
   * A write: begin (drop the entry, raise the fence) → commit in DynamoDB → end (store the new entry
   * if the writer had the key to itself, else drop it). When the begin cannot reach the node, the
   * `strict` policy refuses the write before anything is committed; `available` commits and leaves
   * the key dirty for repair (G1's documented bound).
   */
  async write<T>(
    node: CacheNode | undefined,
    key: string,
    ttlMs: number,
    commit: (hint: VersionHint) => Promise<CommitOutcome<T>>,
  ): Promise<T> {
    if (node === undefined) return (await commit(undefined)).result;
    const { hooks, fenceMs, writePolicy } = this.settings;
    const stamp = randomToken();
    let begun = false;
    let hint: VersionHint;
    let failure: unknown = new Error('node is down');
    if (node.writable) {
      const deadline = Date.now() + this.settings.commandTimeoutMs;
      try {
        await ensureConnected(node, deadline);
        const cached = await before(node, deadline, () => node.client.wtBeginWrite(key, stamp, fenceMs));
        hint = cached === '' ? undefined : Number(cached);
        begun = true;
      } catch (err) {
        failure = err;
        failed(node, err, 'begin-write');
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
    await hooks?.beforeCommit?.(key);
    let outcome: CommitOutcome<T>;
    try {
      outcome = await commit(hint);
    } catch (err) {
      // R7: nothing new may be cached; a timed-out write may still have committed, so drop the entry.
      if (begun) await this.endWrite(node, key, stamp, undefined, ttlMs);
      throw err;
    }
    await hooks?.afterCommit?.(key);
    if (begun) await this.endWrite(node, key, stamp, outcome.entry, ttlMs);
    return outcome.result;
  }

  private async endWrite(node: CacheNode, key: string, stamp: string, entry: CacheEntry | undefined, ttlMs: number): Promise<void> {
    try {
      await before(node, Date.now() + this.settings.commandTimeoutMs, () =>
        node.client.wtEndWrite(key, node.settleKeyFor(key), stamp, randomToken(), entry?.data ?? '', entry?.version ?? '', ttlMs),
      );
    } catch (err) {
      // The fence raised at begin keeps fills off this key until it expires (strict's guarantee);
      // the key is also repaired before the node is trusted again.
      failed(node, err, 'end-write');
      node.dirty.add(key, `end-write: ${errorMessage(err)}`);
    }
  }

  /** Drops an entry (stream records, out-of-band changes). Throws when the node cannot be reached. */
  async invalidate(node: CacheNode | undefined, key: string): Promise<void> {
    if (node === undefined) return;
    let failure: unknown = new Error('node is down');
    if (!node.writable) await node.probeNow();
    if (node.writable) {
      const deadline = Date.now() + this.settings.commandTimeoutMs;
      try {
        await ensureConnected(node, deadline);
        await before(node, deadline, () => node.client.wtInvalidate(key, randomToken()));
        return;
      } catch (err) {
        failure = err;
        failed(node, err, 'invalidate');
      }
    }
    node.dirty.add(key, `invalidate: ${errorMessage(failure)}`);
    throw new CacheUnavailableError(`cache node ${node.address} cannot be invalidated: ${errorMessage(failure)}`, { cause: failure });
  }
}
