import { VIRTUAL_SHARDS, type CacheConfig } from '../config.ts';
import { ClusterMap } from './cluster.ts';
import { CacheNode, type NodeSettings } from './node.ts';

/** Default map: contiguous ranges of the 100 virtual shards over the nodes, in CACHE_NODES order. */
export function contiguousShardMap(nodeCount: number): number[] {
  return Array.from({ length: VIRTUAL_SHARDS }, (_, s) => Math.floor((s * nodeCount) / VIRTUAL_SHARDS));
}

/**
 * Virtual shard → node. In cluster mode the key's slot decides instead: one node per primary of the
 * cluster (cluster.ts); in `off` mode there are none.
 */
export class ShardMap {
  private readonly shardNodes: CacheNode[];
  private readonly map: number[];
  private readonly cluster: ClusterMap | undefined;

  constructor(config: CacheConfig, settings: NodeSettings) {
    this.shardNodes = [];
    this.map = [];
    if (config.mode === 'cluster') {
      this.cluster = new ClusterMap(config.nodes, settings);
    } else if (config.mode === 'shards') {
      this.shardNodes = config.nodes.map((url, i) => new CacheNode(String(i), url, settings));
      this.map = config.shardMap ?? contiguousShardMap(this.shardNodes.length);
    }
  }

  /** Every node (in cluster mode: the primaries the last look at the topology found). */
  get nodes(): CacheNode[] {
    return this.cluster?.nodes ?? this.shardNodes;
  }

  /** The node that holds a virtual shard (in cluster mode: the primary of `redisKey`'s slot); undefined when the cache is off. */
  nodeFor(shard: number, redisKey: string): CacheNode | undefined {
    if (this.cluster !== undefined) return this.cluster.nodeForKey(redisKey);
    const i = this.map[shard];
    return i === undefined ? undefined : this.shardNodes[i];
  }

  async close(): Promise<void> {
    await Promise.all(this.shardNodes.map((n) => n.close()));
    await this.cluster?.close();
  }
}

export function nodeSettings(config: CacheConfig, clock?: () => number): NodeSettings {
  return {
    checkIntervalMs: config.checkIntervalSeconds * 1000,
    startCycles: config.startCycles,
    commandTimeoutMs: config.commandTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    dirtyKeysMax: config.dirtyKeysMax,
    authToken: config.authToken,
    authUser: config.authUser,
    tlsCa: config.tlsCa,
    logKeys: config.logKeys,
    clock,
  };
}
