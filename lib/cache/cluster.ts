import { isIP } from 'node:net';
import { Redis } from 'ioredis';
import { errorMessage } from '../errors.ts';
import { logger, redactUrl } from '../log.ts';
import { within } from './deadline.ts';
import { CacheNode, clientOptions, withoutCredentials, type ClusterMembership, type NodeSettings } from './node.ts';
import { SLOTS, slotOf, type Redirect } from './slots.ts';
import { deadlineClock } from '../clock.ts';

/** A redirect asks for a refresh of the topology at most this often. */
const REDIRECT_REFRESH_MS = 100;
/**
 * A primary found demoted (its role, at a verification), or a request for a key whose primary is
 * believed down, asks for one at most this often: a promoted replica is learnt this soon after it took
 * over, while strict writes of its slots are refused (a CLUSTER SLOTS of a few hundred bytes per client).
 */
const FAILURE_REFRESH_MS = 250;

/** One range of CLUSTER SLOTS' answer: first slot, last slot, then the primary's [host, port, id, …]. */
type SlotRange = [number, number, [string, number, ...unknown[]], ...unknown[]];

/**
 * Cluster mode (ARCHITECTURE.md, "Cluster mode"): one CacheNode per primary of a Redis Cluster, each on
 * a standalone connection with shards mode's state machine (up, down, starting, settling), its own
 * epoch and dirty keys; every key goes to the primary that owns its slot. The topology (CLUSTER SLOTS)
 * is learnt from the seed, then refreshed each check interval, on every redirect (MOVED, ASK), on a
 * demoted primary and while requests are for keys of a primary believed down, so a failover or a slot
 * migration reaches the routing within a check interval at most. A stall of one primary therefore
 * costs only the keys of its slots.
 *
 * Until the topology is known (a cold start), the seed serves every slot: its own keys at once, the
 * others by redirect (a redirected read is served around the cache, a write is sent again to the node
 * the redirect names, protocol.ts).
 */
export class ClusterMap {
  private readonly seed: URL;
  private readonly settings: NodeSettings;
  private readonly clock: () => number;
  /** Every node this map made, by host:port, while it owns slots. */
  private readonly byAddress = new Map<string, CacheNode>();
  /** slot → the primary that owns it. */
  private owners: (CacheNode | undefined)[];
  /** The lowest slot each primary owns: where its epoch's seal lives (the same for every client that sees the same topology). */
  private sealSlots = new Map<CacheNode, number>();
  /** The seed's host, an IPv6 address without its URL brackets, and host:port as CLUSTER SLOTS and MOVED spell it. */
  private get seedHost(): string {
    return this.seed.hostname.replace(/^\[|\]$/g, '');
  }

  private get seedAddress(): string {
    return `${this.seedHost}:${this.seed.port || 6379}`;
  }

  /** The replicas the last answer listed (host:port): asked for the topology when no known primary answers. */
  private replicas: string[] = [];
  private refreshing: Promise<void> | undefined;
  private lastRefresh = 0;
  /** The primaries that own slots, in the order CLUSTER SLOTS lists them. */
  nodes: CacheNode[];

  constructor(urls: string[], settings: NodeSettings) {
    const first = urls[0];
    if (first === undefined) throw new Error('cluster mode needs the URL of a cluster node');
    this.seed = new URL(first);
    this.settings = settings;
    this.clock = settings.clock ?? deadlineClock;
    const seed = this.nodeAt(this.seedAddress);
    this.owners = new Array<CacheNode | undefined>(SLOTS).fill(seed);
    this.nodes = [seed];
    void this.refresh();
  }

  /** The primary that owns `key`'s slot; the check interval's refresh of the topology is started from here. */
  nodeForKey(key: string): CacheNode | undefined {
    const since = this.clock() - this.lastRefresh;
    if (since >= this.settings.checkIntervalMs) void this.refresh();
    const node = this.owners[slotOf(key)];
    // A primary believed down may have been failed over: a dead one fails no command (requests go around
    // it), and its probes come at most once a second, so the request itself asks the topology.
    if (node !== undefined && since >= FAILURE_REFRESH_MS && !node.writable) void this.refresh();
    return node;
  }

  /**
   * The key's slot has no owner in the topology learnt last: no node can be fenced or invalidated for
   * it (item-cache.ts: a strict write is refused, an invalidation fails and its record is parked).
   */
  unowned(key: string): boolean {
    if (this.owners[slotOf(key)] !== undefined) return false;
    // Most likely about to get one (an operator's fix, a resharding resumed): the topology is asked again.
    if (this.clock() - this.lastRefresh >= FAILURE_REFRESH_MS) void this.refresh();
    return true;
  }

  /** Learns the topology again (one refresh at a time; callers share it). */
  refresh(): Promise<void> {
    this.refreshing ??= this.discover().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async discover(): Promise<void> {
    this.lastRefresh = this.clock();
    let failure: unknown = new Error('no node to ask');
    // The nodes that answer first; any primary knows the whole topology.
    const askers = [...this.nodes].sort((a, b) => Number(b.writable) - Number(a.writable));
    for (const node of askers) {
      try {
        const ranges = await this.askSlots(node);
        this.apply(ranges);
        return;
      } catch (err) {
        failure = err;
      }
    }
    // No known primary answered (every one failed over at once: an Availability Zone that held them
    // all, the one primary of a one-shard cluster): the configuration endpoint again, then the replicas
    // the last answer listed, each on a connection made for this one question.
    for (const address of [this.seedAddress, ...this.replicas]) {
      if (askers.some((n) => n === this.byAddress.get(address))) continue;
      try {
        const ranges = await this.askOnce(address);
        this.apply(ranges);
        logger.info('CACHE_CLUSTER_TOPOLOGY_RELEARNT', { from: address });
        return;
      } catch (err) {
        failure = err;
      }
    }
    logger.warn('CACHE_CLUSTER_TOPOLOGY_UNKNOWN', { seed: redactUrl(this.seed.href), error: errorMessage(failure) });
  }

  private async askSlots(node: CacheNode): Promise<SlotRange[]> {
    const deadline = deadlineClock() + this.settings.connectTimeoutMs + this.settings.commandTimeoutMs;
    const status = node.client.status;
    if (status === 'reconnecting' || status === 'end' || status === 'close') throw new Error(`not connected (${status})`);
    if (status !== 'ready') {
      // A connection still being made (a cold start): wait for it, not for the node's verification,
      // which itself waits for the topology (sealSlot).
      await within(node.address, deadline, () => new Promise<void>((resolve) => node.client.once('ready', () => resolve())));
    }
    return (await within(node.address, deadline, () => node.client.call('CLUSTER', 'SLOTS'))) as SlotRange[];
  }

  /** CLUSTER SLOTS asked of the node at `address` on a connection of its own, closed after. */
  private async askOnce(address: string): Promise<SlotRange[]> {
    const deadline = deadlineClock() + this.settings.connectTimeoutMs + this.settings.commandTimeoutMs;
    const { url, servername } = this.urlOf(address);
    const opts = clientOptions(this.settings, url);
    if (opts.tls && servername) opts.tls = { ...opts.tls, servername };
    const client = new Redis(withoutCredentials(url), { ...opts, retryStrategy: () => null, enableAutoPipelining: false });
    client.on('error', () => undefined);
    try {
      await within(
        address,
        deadline,
        () =>
          new Promise<void>((resolve, reject) => {
            client.once('ready', () => resolve());
            client.once('end', () => reject(new Error(`no connection to ${address}`)));
          }),
      );
      return (await within(address, deadline, () => client.call('CLUSTER', 'SLOTS'))) as SlotRange[];
    } finally {
      client.disconnect();
    }
  }

  /** host:port of a CLUSTER SLOTS entry; an empty host means "the address you reached me at" (Redis 7 with an unknown endpoint): the seed's. */
  private addressOf(entry: unknown): string | undefined {
    if (!Array.isArray(entry) || entry.length < 2) return undefined;
    const host = entry[0] === '' || entry[0] === '?' ? this.seedHost : String(entry[0]);
    return `${host}:${entry[1]}`;
  }

  private apply(ranges: SlotRange[]): void {
    const owners = new Array<CacheNode | undefined>(SLOTS).fill(undefined);
    const sealSlots = new Map<CacheNode, number>();
    const nodes: CacheNode[] = [];
    const replicas = new Set<string>();
    for (const [start, end, primary, ...others] of ranges) {
      for (const r of others) {
        const a = this.addressOf(r);
        if (a !== undefined) replicas.add(a);
      }
      const node = this.nodeAt(this.addressOf(primary) as string);
      if (!nodes.includes(node)) nodes.push(node);
      for (let s = start; s <= end; s++) owners[s] = node;
      if (start < (sealSlots.get(node) ?? SLOTS)) sealSlots.set(node, start);
    }
    const before = this.sealSlots;
    this.owners = owners;
    this.sealSlots = sealSlots;
    this.nodes = nodes;
    this.replicas = [...replicas];
    const owed = this.owed;
    this.owed = new Map();
    let flushOwedBy: string | undefined;
    for (const [address, node] of this.byAddress) {
      if (nodes.includes(node)) continue;
      // A migration's target that owns no slot yet (a new primary's first slot): kept, its keys are
      // reached by ASK (importing, below).
      if (this.importing(node)) continue;
      // Owns no slot any more (failed over, emptied by a migration, or the seed named otherwise): what it
      // holds is tagged with its epoch, which no owner's clients trust. But a dirty key it was owed may be
      // an entry of another epoch that a repair's MOVED followed here (node.ts `invalidateMoved`), and
      // that entry went on with the slot (to a promoted replica, a migration's target): still owed, now
      // where the key lives (below).
      const todo = node.dirty.snapshot();
      for (const key of todo.keys) owed.set(key, node.address);
      if (todo.flush) flushOwedBy = node.address;
      // What an operation still in flight on it owes it from now on (a write's end that failed as the
      // node closed under it) is owed to the key's owner as well.
      node.dirty.forwardTo((key, reason) => {
        const from = `${node.address} (${reason})`;
        this.handOver(
          key === undefined ? new Map() : new Map([[key, from]]),
          key === undefined ? from : undefined,
          this.owners,
          this.nodes,
        );
      });
      this.byAddress.delete(address);
      void node.retire();
      logger.info('CACHE_CLUSTER_NODE_RETIRED', { cacheNode: node.address, dirtyKeys: todo.keys.length });
    }
    this.handOver(owed, flushOwedBy, owners, nodes);
    // A primary whose seal slot moved seals its epoch again where it now lives (a settle, never a stale read).
    for (const [node, slot] of sealSlots) {
      const was = before.get(node);
      if (was !== undefined && was !== slot) node.unsealed();
      // A migration's target verified while it owned no slot (no seal, node.ts verifyEpoch): sealed now.
      if (was === undefined && this.importers.delete(node)) node.unsealed();
    }
  }

  /**
   * The dirty keys of retired nodes, each made a dirty key of its slot's owner now, which is marked down
   * and repaired before it is trusted again (R6), as a redirected repair does (node.ts
   * `invalidateMoved`). A key whose slot has no owner waits here for the next topology that gives it
   * one. A retired node's overflowed set (its keys unknown) is a flush owed to every primary.
   */
  private handOver(
    owed: Map<string, string>,
    flushOwedBy: string | undefined,
    owners: (CacheNode | undefined)[],
    nodes: CacheNode[],
  ): void {
    const owing = new Set<CacheNode>();
    for (const [key, from] of owed) {
      const owner = owners[slotOf(key)];
      if (owner === undefined) {
        this.owed.set(key, from);
        continue;
      }
      owner.dirty.add(key, `owed to ${from}, retired from the topology`);
      owing.add(owner);
    }
    if (flushOwedBy !== undefined) {
      for (const node of nodes) {
        node.dirty.addFlush(`owed to ${flushOwedBy}, retired from the topology with more dirty keys than kept`);
        owing.add(node);
      }
    }
    for (const node of owing) {
      // Delivered as soon as the node can take them, not at its next probe only; writes still go to it.
      node.owe('invalidations owed to a node retired from the topology');
    }
  }

  /** Dirty keys of retired nodes whose slot had no owner when they were retired (handOver), key → the node it was owed to. */
  private owed = new Map<string, string>();

  /**
   * The topology, learnt first by a cold container (its seed alone serves every slot until then, and
   * names no peer): false when no node answered.
   */
  async learnt(): Promise<boolean> {
    if (this.sealSlots.size === 0) await this.refresh();
    return this.sealSlots.size > 0;
  }

  /**
   * The primaries besides `owner` (the topology learnt last) that an invalidation of a key of `slot`
   * asks for keys of it (protocol.ts `invalidate`), less those found holding none (heldNone) under
   * this topology within this check interval: a primary gains keys of a slot it does not own only by
   * importing it (reached by ASK meanwhile), which ends in a topology change (ARCHITECTURE.md, "A slot
   * with no owner").
   */
  peersOf(owner: CacheNode, slot: number): CacheNode[] {
    const clean = this.cleanNow();
    return this.nodes.filter((n) => n !== owner && !clean.slots.get(n)?.has(slot));
  }

  /** `peer` answered that it holds no key of `slot` (CLUSTER COUNTKEYSINSLOT): not asked again until the topology or the check interval changes. */
  heldNone(peer: CacheNode, slot: number): void {
    const clean = this.cleanNow();
    let slots = clean.slots.get(peer);
    if (slots === undefined) clean.slots.set(peer, (slots = new Set()));
    slots.add(slot);
  }

  /** Peer → the slots it was found holding no key of, under the topology `owners` (each learnt one is a new array), since `since`. */
  private clean = { owners: [] as (CacheNode | undefined)[], since: 0, slots: new Map<CacheNode, Set<number>>() };

  private cleanNow(): { slots: Map<CacheNode, Set<number>> } {
    const now = this.clock();
    if (this.clean.owners !== this.owners || now - this.clean.since >= this.settings.checkIntervalMs) {
      this.clean = { owners: this.owners, since: now, slots: new Map() };
    }
    return this.clean;
  }

  /** The node at host:port, made on first sight with the seed's scheme and credentials. */
  private nodeAt(address: string): CacheNode {
    let node = this.byAddress.get(address);
    if (node !== undefined) return node;
    const { url, servername } = this.urlOf(address);
    const made: { node?: CacheNode } = {};
    const membership: ClusterMembership = {
      sealSlot: async () => {
        // A node first seen in a redirect, or before the topology is known: learn it first, within a
        // command timeout (a longer wait is a NoAnswer, which re-probes the node soon).
        if (made.node === undefined || !this.sealSlots.has(made.node)) {
          await within(address, deadlineClock() + this.settings.commandTimeoutMs, () => this.refresh());
        }
        return made.node === undefined ? undefined : this.sealSlots.get(made.node);
      },
      moved: (redirect) => this.moved(redirect),
      importing: () => made.node !== undefined && this.importing(made.node),
      ownerOf: (key) => this.owners[slotOf(key)],
      relearn: async (deadline, moved = false) => {
        if (!moved && this.refreshing === undefined && this.clock() - this.lastRefresh < FAILURE_REFRESH_MS) return;
        await within(address, deadline, () => this.refresh());
      },
    };
    node = new CacheNode(address, url.href, this.settings, membership, servername);
    made.node = node;
    this.byAddress.set(address, node);
    // A refresh or a redirect answered after close() still makes nodes: closed at once, or their
    // clients would reconnect for ever and keep the process alive.
    if (this.closed) void node.close();
    return node;
  }

  /** The URL of the node at host:port: the seed's scheme and credentials, and the name its TLS certificate carries. */
  private urlOf(address: string): { url: URL; servername: string | undefined } {
    const url = new URL(this.seed.href);
    const colon = address.lastIndexOf(':');
    const host = address.slice(0, colon);
    // An IPv6 address (as CLUSTER SLOTS and MOVED spell it, bare) goes in brackets: the URL standard
    // ignores a bare one, which would leave the seed's host with this node's port.
    url.hostname = isIP(host) === 6 ? `[${host}]` : host;
    url.port = address.slice(colon + 1);
    // ElastiCache names its TLS certificates after the cluster's endpoint: a node listed by address
    // is verified against the seed's name.
    const servername = isIP(host) && !isIP(this.seedHost) ? this.seedHost : undefined;
    return { url, servername };
  }

  /**
   * Nodes an ASK named (a migration's target), and when (state machine clock): one that owns no slot yet
   * (a new primary's first slot) is not retired for a check interval after, and is verified without a
   * seal (node.ts verifyEpoch).
   */
  private readonly importers = new Map<CacheNode, number>();

  /** The node owns no slot in the topology learnt last, and an ASK named it within the check interval. */
  private importing(node: CacheNode): boolean {
    const at = this.importers.get(node);
    return at !== undefined && !this.sealSlots.has(node) && this.clock() - at < this.settings.checkIntervalMs;
  }

  private moved(redirect: Redirect | undefined): CacheNode | undefined {
    const since = this.clock() - this.lastRefresh;
    if (since >= (redirect === undefined ? FAILURE_REFRESH_MS : REDIRECT_REFRESH_MS)) void this.refresh();
    if (redirect === undefined) return undefined;
    const target = this.nodeAt(redirect.address);
    if (redirect.kind === 'ASK') this.importers.set(target, this.clock());
    if (redirect.kind === 'MOVED') {
      // Known at once from the answer: the next request of this slot goes to its new owner.
      this.owners[redirect.slot] = target;
      // A slot moved: what peers were found holding is asked again (peersOf).
      this.clean.owners = [];
      if (!this.nodes.includes(target)) this.nodes = [...this.nodes, target];
    }
    return target;
  }

  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.byAddress.values()].map((n) => n.close()));
  }
}
