import { VIRTUAL_SHARDS, type CacheConfig } from '../config.ts';
import { refreshAuthToken } from '../secrets.ts';
import { AuthRefresh } from './auth-refresh.ts';
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

  constructor(config: CacheConfig, settings: NodeSettings) {
    if (config.mode === 'off') {
      this.nodes = [];
      this.map = [];
    } else if (config.mode === 'cluster') {
      this.nodes = [new CacheNode('cluster', config.nodes, settings, 'cluster')];
      this.map = new Array<number>(VIRTUAL_SHARDS).fill(0);
    } else {
      this.nodes = config.nodes.map((url, i) => new CacheNode(String(i), [url], settings));
      this.map = config.shardMap ?? contiguousShardMap(this.nodes.length);
    }
  }

  /** The node that holds a virtual shard; undefined when the cache is off. */
  nodeFor(shard: number): CacheNode | undefined {
    const i = this.map[shard];
    return i === undefined ? undefined : this.nodes[i];
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.close()));
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
