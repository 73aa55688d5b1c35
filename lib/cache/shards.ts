import { VIRTUAL_SHARDS, type CacheConfig } from '../config.ts';
import { logger } from '../log.ts';
import { refreshAuthToken } from '../secrets.ts';
import { AuthRefresh } from './auth-refresh.ts';
import { ClusterMap } from './cluster.ts';
import { bareAddress, MapView, type MapViewSettings } from './maps.ts';
import { CacheNode, type NodeSettings } from './node.ts';

/** Default map: contiguous ranges of the 100 virtual shards over the nodes, in CACHE_NODES order. */
export function contiguousShardMap(nodeCount: number): number[] {
  return Array.from({ length: VIRTUAL_SHARDS }, (_, s) => Math.floor((s * nodeCount) / VIRTUAL_SHARDS));
}

/**
 * Virtual shard → node. In cluster mode the key's slot decides instead: one node per primary of the
 * cluster (cluster.ts); in `off` mode there are none. In shards mode, the live shard maps (maps.ts).
 */
export class ShardMap {
  private readonly shardNodes: CacheNode[];
  private readonly map: number[];
  private readonly cluster: ClusterMap | undefined;
  /** Shards mode: the live maps (maps.ts), and every node by address, those only other maps name included. */
  readonly view: MapView | undefined;
  private readonly byAddress = new Map<string, CacheNode>();
  private allowPlainAuth = false;

  constructor(
    config: CacheConfig,
    private readonly settings: NodeSettings,
    maps?: Omit<MapViewSettings, 'clock' | 'commandTimeoutMs'>,
  ) {
    this.shardNodes = [];
    this.map = [];
    if (config.mode === 'cluster') {
      this.cluster = new ClusterMap(config.nodes, settings);
    } else if (config.mode === 'shards') {
      this.shardNodes = config.nodes.map((url, i) => new CacheNode(String(i), url, settings));
      this.map = config.shardMap ?? contiguousShardMap(this.shardNodes.length);
      const addresses = config.nodes.map(bareAddress);
      addresses.forEach((a, i) => this.byAddress.set(a, this.shardNodes[i] as CacheNode));
      if (maps !== undefined) {
        this.allowPlainAuth = config.allowPlainAuth;
        this.view = new MapView({ nodes: addresses, shards: this.map }, this.shardNodes, (a) => this.nodeAt(a), {
          ...maps,
          commandTimeoutMs: config.commandTimeoutMs,
          clock: settings.clock ?? Date.now,
        });
      }
    }
  }

  /** Every node (in cluster mode: the primaries the last look at the topology found). */
  get nodes(): CacheNode[] {
    return this.cluster?.nodes ?? this.shardNodes;
  }

  /**
   * The node at an address another map names: this container's own, or one made on demand with this
   * container's settings and credentials (kept for the container's life). A password is never sent in
   * clear: to a plain `redis://` node it is not sent unless CACHE_ALLOW_PLAIN_AUTH, so a node that
   * requires one refuses the connection, and writes treat it as unreachable.
   */
  nodeAt(address: string): CacheNode {
    let node = this.byAddress.get(address);
    if (node === undefined) {
      const plain = new URL(address).protocol === 'redis:' && !this.allowPlainAuth;
      const settings = plain ? { ...this.settings, authToken: undefined, authUser: undefined } : this.settings;
      node = new CacheNode(`map:${this.byAddress.size}`, address, settings);
      this.byAddress.set(address, node);
      logger.info('CACHE_NODE_OF_OTHER_MAP', { cacheNode: node.address });
    }
    return node;
  }

  /** The nodes other live maps place a virtual shard on, besides this map's own node for it (shards mode). */
  othersFor(shard: number, redisKey: string): CacheNode[] {
    return this.view?.othersFor(shard, this.nodeFor(shard, redisKey)) ?? [];
  }

  /** The node that holds a virtual shard (in cluster mode: the primary of `redisKey`'s slot); undefined when the cache is off. */
  nodeFor(shard: number, redisKey: string): CacheNode | undefined {
    if (this.cluster !== undefined) return this.cluster.nodeForKey(redisKey);
    const i = this.map[shard];
    return i === undefined ? undefined : this.shardNodes[i];
  }

  /** Cluster mode: the primaries besides `owner` to ask whether they hold keys of `slot`, which they do not own (cluster.ts `peersOf`); none in shards mode. */
  peersOf(owner: CacheNode, slot: number): CacheNode[] {
    return this.cluster?.peersOf(owner, slot) ?? [];
  }

  /** Cluster mode: `peer` holds no key of `slot` (cluster.ts `heldNone`). */
  heldNone(peer: CacheNode, slot: number): void {
    this.cluster?.heldNone(peer, slot);
  }

  /** Cluster mode: the topology is known, learnt first by a cold container (cluster.ts `learnt`); always in the other modes. */
  async topologyLearnt(): Promise<boolean> {
    return (await this.cluster?.learnt()) ?? true;
  }

  /** Cluster mode: no primary owns `redisKey`'s slot in the topology learnt last (cluster.ts). */
  unowned(redisKey: string): boolean {
    return this.cluster?.unowned(redisKey) ?? false;
  }

  async close(): Promise<void> {
    await Promise.all([...new Set([...this.shardNodes, ...this.byAddress.values()])].map((n) => n.close()));
    await this.cluster?.close();
  }
}

export function nodeSettings(config: CacheConfig, clock?: () => number): NodeSettings {
  const secretArn = config.authTokenSecretArn;
  return {
    checkIntervalMs: config.checkIntervalSeconds * 1000,
    startCycles: config.startCycles,
    commandTimeoutMs: config.commandTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    dirtyKeysMax: config.dirtyKeysMax,
    authToken: config.authToken,
    // A token from a secret is fetched again when a node refuses it, at most every 5 s.
    authRefresh: secretArn ? new AuthRefresh(() => refreshAuthToken(secretArn), 5000, clock) : undefined,
    authUser: config.authUser,
    tlsCa: config.tlsCa,
    logKeys: config.logKeys,
    clock,
  };
}
