import { isIP } from 'node:net';
import { errorMessage } from '../errors.ts';
import { logger, redactUrl } from '../log.ts';
import { within } from './deadline.ts';
import { CacheNode, type ClusterMembership, type NodeSettings } from './node.ts';
import { SLOTS, slotOf, type Redirect } from './slots.ts';

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
  private refreshing: Promise<void> | undefined;
  private lastRefresh = 0;
  /** The primaries that own slots, in the order CLUSTER SLOTS lists them. */
  nodes: CacheNode[];

  constructor(urls: string[], settings: NodeSettings) {
    const first = urls[0];
    if (first === undefined) throw new Error('cluster mode needs the URL of a cluster node');
    this.seed = new URL(first);
    this.settings = settings;
    this.clock = settings.clock ?? Date.now;
    const seed = this.nodeAt(`${this.seed.hostname}:${this.seed.port || 6379}`);
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
    logger.warn('CACHE_CLUSTER_TOPOLOGY_UNKNOWN', { seed: redactUrl(this.seed.href), error: errorMessage(failure) });
  }

  private async askSlots(node: CacheNode): Promise<SlotRange[]> {
    const deadline = Date.now() + this.settings.connectTimeoutMs + this.settings.commandTimeoutMs;
    const status = node.client.status;
    if (status === 'reconnecting' || status === 'end' || status === 'close') throw new Error(`not connected (${status})`);
    if (status !== 'ready') {
      // A connection still being made (a cold start): wait for it, not for the node's verification,
      // which itself waits for the topology (sealSlot).
      await within(node.address, deadline, () => new Promise<void>((resolve) => node.client.once('ready', () => resolve())));
    }
    return (await within(node.address, deadline, () => node.client.call('CLUSTER', 'SLOTS'))) as SlotRange[];
  }

  private apply(ranges: SlotRange[]): void {
    const owners = new Array<CacheNode | undefined>(SLOTS).fill(undefined);
    const sealSlots = new Map<CacheNode, number>();
    const nodes: CacheNode[] = [];
    for (const [start, end, primary] of ranges) {
      // An empty host means "the address you reached me at" (Redis 7 with an unknown endpoint): the seed's.
      const host = primary[0] === '' || primary[0] === '?' ? this.seed.hostname : primary[0];
      const node = this.nodeAt(`${host}:${primary[1]}`);
      if (!nodes.includes(node)) nodes.push(node);
      for (let s = start; s <= end; s++) owners[s] = node;
      if (start < (sealSlots.get(node) ?? SLOTS)) sealSlots.set(node, start);
    }
    const before = this.sealSlots;
    this.owners = owners;
    this.sealSlots = sealSlots;
    this.nodes = nodes;
    for (const [address, node] of this.byAddress) {
      if (nodes.includes(node)) continue;
      // Owns no slot any more (failed over, emptied by a migration, or the seed named otherwise): what it
      // holds is tagged with its epoch, which no owner's clients trust; nothing is owed to it.
      this.byAddress.delete(address);
      void node.close();
      logger.info('CACHE_CLUSTER_NODE_RETIRED', { cacheNode: node.address });
    }
    // A primary whose seal slot moved seals its epoch again where it now lives (a settle, never a stale read).
    for (const [node, slot] of sealSlots) {
      const was = before.get(node);
      if (was !== undefined && was !== slot) node.unsealed();
    }
  }

  /** The node at host:port, made on first sight with the seed's scheme and credentials. */
  private nodeAt(address: string): CacheNode {
    let node = this.byAddress.get(address);
    if (node !== undefined) return node;
    const url = new URL(this.seed.href);
    const colon = address.lastIndexOf(':');
    url.hostname = address.slice(0, colon);
    url.port = address.slice(colon + 1);
    // ElastiCache names its TLS certificates after the cluster's endpoint: a node listed by address
    // is verified against the seed's name.
    const servername = isIP(url.hostname.replace(/^\[|\]$/g, '')) && !isIP(this.seed.hostname) ? this.seed.hostname : undefined;
    const made: { node?: CacheNode } = {};
    const membership: ClusterMembership = {
      sealSlot: async () => {
        // A node first seen in a redirect, or before the topology is known: learn it first, within a
        // command timeout (a longer wait is a NoAnswer, which re-probes the node soon).
        if (made.node === undefined || !this.sealSlots.has(made.node)) {
          await within(address, Date.now() + this.settings.commandTimeoutMs, () => this.refresh());
        }
        return made.node === undefined ? undefined : this.sealSlots.get(made.node);
      },
      moved: (redirect) => this.moved(redirect),
    };
    node = new CacheNode(address, url.href, this.settings, membership, servername);
    made.node = node;
    this.byAddress.set(address, node);
    return node;
  }

  private moved(redirect: Redirect | undefined): CacheNode | undefined {
    const since = this.clock() - this.lastRefresh;
    if (since >= (redirect === undefined ? FAILURE_REFRESH_MS : REDIRECT_REFRESH_MS)) void this.refresh();
    if (redirect === undefined) return undefined;
    const target = this.nodeAt(redirect.address);
    if (redirect.kind === 'MOVED') {
      // Known at once from the answer: the next request of this slot goes to its new owner.
      this.owners[redirect.slot] = target;
      if (!this.nodes.includes(target)) this.nodes = [...this.nodes, target];
    }
    return target;
  }

  async close(): Promise<void> {
    await Promise.all([...this.byAddress.values()].map((n) => n.close()));
  }
}
