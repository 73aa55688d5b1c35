import { VIRTUAL_SHARDS, type CacheConfig } from '../config.ts';
import { logger } from '../log.ts';
import { refreshAuthToken } from '../secrets.ts';
import { AuthRefresh } from './auth-refresh.ts';
import { bareAddress, MapView, type MapViewSettings } from './maps.ts';
import { CacheNode, type NodeSettings } from './node.ts';

/** Default map: contiguous ranges of the 100 virtual shards over the nodes, in CACHE_NODES order. */
export function contiguousShardMap(nodeCount: number): number[] {
  return Array.from({ length: VIRTUAL_SHARDS }, (_, s) => Math.floor((s * nodeCount) / VIRTUAL_SHARDS));
}

/**
 * Virtual shard → node. In cluster mode there is one node (an ioredis Cluster, which routes by slot
 * itself) and every shard maps to it; in `off` mode there are none.
 */
export class ShardMap {
  readonly nodes: CacheNode[];
  private readonly map: number[];
  /** Shards mode: the live maps (maps.ts), and every node by address, those only other maps name included. */
  readonly view: MapView | undefined;
  private readonly byAddress = new Map<string, CacheNode>();

  constructor(
    config: CacheConfig,
    private readonly settings: NodeSettings,
    maps?: Omit<MapViewSettings, 'clock' | 'commandTimeoutMs'>,
  ) {
    if (config.mode === 'off') {
      this.nodes = [];
      this.map = [];
    } else if (config.mode === 'cluster') {
      this.nodes = [new CacheNode('cluster', config.nodes, settings, 'cluster')];
      this.map = new Array<number>(VIRTUAL_SHARDS).fill(0);
    } else {
      this.nodes = config.nodes.map((url, i) => new CacheNode(String(i), [url], settings));
      this.map = config.shardMap ?? contiguousShardMap(this.nodes.length);
      const addresses = config.nodes.map(bareAddress);
      addresses.forEach((a, i) => this.byAddress.set(a, this.nodes[i] as CacheNode));
      if (maps !== undefined) {
        this.allowPlainAuth = config.allowPlainAuth;
        this.view = new MapView({ nodes: addresses, shards: this.map }, this.nodes, (a) => this.nodeAt(a), {
          ...maps,
          commandTimeoutMs: config.commandTimeoutMs,
          clock: settings.clock ?? Date.now,
        });
      }
    }
  }

  private allowPlainAuth = false;

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
      node = new CacheNode(`map:${this.byAddress.size}`, [address], settings);
      this.byAddress.set(address, node);
      logger.info('CACHE_NODE_OF_OTHER_MAP', { cacheNode: node.address });
    }
    return node;
  }

  /** The nodes other live maps place a virtual shard on, besides this map's own node for it. */
  othersFor(shard: number): CacheNode[] {
    return this.view?.othersFor(shard, this.nodeFor(shard)) ?? [];
  }

  /** The node that holds a virtual shard; undefined when the cache is off. */
  nodeFor(shard: number): CacheNode | undefined {
    const i = this.map[shard];
    return i === undefined ? undefined : this.nodes[i];
  }

  async close(): Promise<void> {
    await Promise.all([...new Set([...this.nodes, ...this.byAddress.values()])].map((n) => n.close()));
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
