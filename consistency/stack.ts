/**
 * The services a run starts for itself: DynamoDB Local (unless DYNAMODB_ENDPOINT names one), tables
 * under a fresh prefix with streams on, plain redis-server shards, one shard that is a primary with
 * a replica behind a movable endpoint (for failovers), and a proxy that can partition one client
 * container from one shard. In cluster mode (`--mode cluster`), instead of the shards: a local Redis
 * Cluster of three primaries with one replica each (real `redis-server --cluster-enabled yes`).
 */
import { randomBytes } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createParkingTable, createTables } from '../infra/local/create-tables.ts';
import { startDynamoDbLocal, localDynamoClientConfig, type DynamoDbLocal } from '../infra/local/dynamodb-local.ts';
import { exampleTables, type TableDefinition } from '../lib/index.ts';
import { freePort } from '../infra/local/ports.ts';
import { RedisServer } from '../infra/local/redis-server.ts';
import { Network, type RemoteProxy } from './network.ts';

export const TABLES: readonly TableDefinition[] = exampleTables.filter((t) => t.name === 'users' || t.name === 'orders');

/**
 * A shard that fails over: writes go to `primary`; `replica` follows it through `link` (which can be
 * cut). Each client container reaches it through its own endpoint, as each resolves the primary
 * endpoint's DNS name on its own: after a failover they do not all move at the same moment.
 */
export interface ReplicatedShard {
  primary: RedisServer;
  replica: RedisServer;
  link: RemoteProxy;
  /** Per container (index = container number), and the main thread's (consumer, probe) last. */
  endpoints: RemoteProxy[];
}

/**
 * Cluster mode: one primary and its replica, named as fault windows and records name them (`shard0`…)
 * whichever of the two is the primary now (a failover swaps them; slots may move to another pair).
 */
export interface ClusterShard {
  name: string;
  primary: RedisServer;
  replica: RedisServer;
}

/**
 * A silent primary stays a primary this long before its replica takes over by itself: longer than any
 * hang of a run (at most 3 s), so that the only failovers are the `failover` fault's.
 */
export const CLUSTER_NODE_TIMEOUT_MS = 15_000;

/**
 * Shards mode: every command of 50 ms or more on a node is logged (SLOWLOG), so that a node's silence
 * the watch saw (network.ts) while the node was busy with a command — the library's, the harness's —
 * is told from one while the machine did not run it (both reported; neither excuses a refusal).
 */
export const SLOW_COMMAND_MS = 50;
const SLOWLOG_ARGS = ['--slowlog-log-slower-than', String(SLOW_COMMAND_MS * 1000), '--slowlog-max-len', '1024'];

/** A command that ran for SLOW_COMMAND_MS or more on a node (SLOWLOG stamps it when it ends, to the second). */
export interface SlowCommand {
  node: string;
  /** When it was logged (ms since the epoch; Redis gives seconds). */
  at: number;
  durationMs: number;
  command: string;
}

export class Stack {
  private dynamoLocal: DynamoDbLocal | undefined;
  readonly dynamo: DynamoDBClient;
  /** Where the Streams consumer parks what it cannot apply (lib/stream/parking.ts). */
  parkingTable = '';

  private constructor(
    readonly endpoint: string,
    readonly prefix: string,
    readonly plain: RedisServer[],
    /** Shards mode only. */
    readonly replicated: ReplicatedShard | undefined,
    /** Client container 0 reaches plain shard `partitionedShard` through this proxy (shards mode only). */
    readonly partition: RemoteProxy | undefined,
    readonly network: Network,
    readonly partitionedShard: number,
    /**
     * The client containers' way to DynamoDB (their DYNAMODB_ENDPOINT): a TCP proxy that the
     * `blackhole` fault cuts (accepts, never answers; open sockets go silent). The Streams consumer,
     * the replayer, the out-of-band writer and the probe reach DynamoDB directly.
     */
    readonly dynamoProxy: RemoteProxy,
    dynamoLocal: DynamoDbLocal | undefined,
    /** Cluster mode: the cluster's primary/replica pairs (undefined in shards mode). */
    readonly cluster: ClusterShard[] | undefined = undefined,
    private readonly clusterServers: RedisServer[] = [],
  ) {
    this.dynamoLocal = dynamoLocal;
    this.dynamo = new DynamoDBClient({ ...localDynamoClientConfig(endpoint), maxAttempts: 1 });
  }

  static async start(opts: {
    shards: number;
    containers: number;
    dynamoEndpoint?: string;
    mode?: 'shards' | 'cluster';
    log: (m: string) => void;
  }): Promise<Stack> {
    let dynamoLocal: DynamoDbLocal | undefined;
    let endpoint = opts.dynamoEndpoint;
    if (endpoint === undefined) {
      dynamoLocal = await startDynamoDbLocal(await freePort());
      endpoint = dynamoLocal.endpoint;
      opts.log(`DynamoDB Local: ${endpoint} (pid ${dynamoLocal.pid})`);
    }
    const prefix = `cons${randomBytes(3).toString('hex')}-`;
    const network = await Network.start();
    if (opts.mode === 'cluster') {
      const cluster = await RedisServer.startCluster(3, { replicas: 1, nodeTimeoutMs: CLUSTER_NODE_TIMEOUT_MS });
      const pairs = cluster.primaries.map((primary, i) => ({ name: `shard${i}`, primary, replica: cluster.replicas[i] as RedisServer }));
      const dynamoProxy = await network.proxy(Number(new URL(endpoint).port));
      const stack = new Stack(endpoint, prefix, [], undefined, undefined, network, -1, dynamoProxy, dynamoLocal, pairs, cluster.servers);
      await stack.createTables();
      return stack;
    }
    const plain = await Promise.all(Array.from({ length: opts.shards }, () => RedisServer.start({ extraArgs: SLOWLOG_ARGS })));
    const replicated = await startReplicated(network, opts.containers + 1);
    const partitionedShard = Math.min(1, plain.length - 1);
    const partition = await network.proxy((plain[partitionedShard] as RedisServer).port);
    const dynamoProxy = await network.proxy(Number(new URL(endpoint).port));
    const stack = new Stack(endpoint, prefix, plain, replicated, partition, network, partitionedShard, dynamoProxy, dynamoLocal);
    await stack.createTables();
    return stack;
  }

  /** The tables the deploy declares (tables.json), and the parking table of the Streams consumer. */
  private async createTables(): Promise<void> {
    await createTables(this.dynamo, TABLES, this.prefix);
    this.parkingTable = await createParkingTable(this.dynamo, this.prefix);
  }

  get physicalTables(): string[] {
    return TABLES.map((t) => this.prefix + t.name);
  }

  /** DYNAMODB_ENDPOINT of the client containers: through the proxy the `blackhole` fault cuts. */
  get containerDynamoEndpoint(): string {
    return `http://127.0.0.1:${this.dynamoProxy.port}`;
  }

  /**
   * CACHE_NODES for client container `container` (-1: the main thread's consumer and probe, and
   * containers started during a run), in CACHE_NODES order, with the name fault windows give each
   * shard: container 0 reaches the partitioned shard through the proxy; each reaches the replicated
   * shard through its own endpoint.
   */
  nodeList(container: number): { url: string; name: string }[] {
    // Cluster mode: every container is given one node to learn the topology from (its seed).
    if (this.cluster !== undefined) return [{ url: (this.cluster[0] as ClusterShard).primary.url, name: 'cluster' }];
    if (this.replicated === undefined) throw new Error('shards mode without its replicated shard');
    const list = this.plain.map((s, i) => ({
      url: container === 0 && i === this.partitionedShard && this.partition ? this.partition.url : s.url,
      name: `shard${i}`,
    }));
    const eps = this.replicated.endpoints;
    const ep = (container >= 0 && container < eps.length - 1 ? eps[container] : eps[eps.length - 1]) as RemoteProxy;
    return [...list, { url: ep.url, name: `shard${this.plain.length}` }];
  }

  nodes(container: number): string {
    return this.nodeList(container)
      .map((n) => n.url)
      .join(',');
  }

  /**
   * The shard name of every address a container may send a key to: in cluster mode each server of a
   * pair (primary or replica: a failover swaps them), in shards mode every container's node list.
   */
  addressNames(containers: number): Record<string, string> {
    const names: Record<string, string> = {};
    if (this.cluster !== undefined) {
      for (const pair of this.cluster) for (const s of [pair.primary, pair.replica]) names[s.url] = pair.name;
      return names;
    }
    for (let c = 0; c < containers; c++) for (const n of this.nodeList(c)) names[n.url] = n.name;
    for (const n of this.nodeList(-1)) names[n.url] = n.name;
    return names;
  }

  /** The port a PING to shard `name` goes to (the main thread's endpoint for the replicated shard; cluster mode: the pair's primary). */
  pingPort(name: string): number {
    const pair = this.cluster?.find((p) => p.name === name);
    if (pair !== undefined) return pair.primary.port;
    if (this.replicated === undefined) throw new Error(`no shard ${name}`);
    const i = Number(name.replace(/^shard/, ''));
    if (i < this.plain.length) return (this.plain[i] as RedisServer).port;
    const eps = this.replicated.endpoints;
    return (eps[eps.length - 1] as RemoteProxy).port;
  }

  /**
   * Shards mode: the commands each node's SLOWLOG holds (a node restarted during the run lost those of
   * before; the replicated shard's two servers both count as its node).
   */
  async slowCommands(): Promise<SlowCommand[]> {
    if (this.replicated === undefined) return [];
    const named: [string, RedisServer][] = this.plain.map((s, i) => [`shard${i}`, s]);
    const name = `shard${this.plain.length}`;
    named.push([name, this.replicated.primary], [name, this.replicated.replica]);
    const out: SlowCommand[] = [];
    for (const [node, server] of named) {
      const c = server.client({ maxRetriesPerRequest: 1, commandTimeout: 5000 });
      try {
        const entries = (await c.call('SLOWLOG', 'GET', '1024')) as [number, number, number, string[]][];
        for (const [, seconds, micros, args] of entries) {
          out.push({ node, at: seconds * 1000, durationMs: micros / 1000, command: args.slice(0, 2).join(' ') });
        }
      } catch {
        // A node that does not answer now has no log to give.
      } finally {
        c.disconnect();
      }
    }
    return out;
  }

  /** FLUSHALL ASYNC on every node (the replicated shard's primary: its replica follows), as README's map-change procedure does. */
  async flushAll(): Promise<void> {
    await Promise.all(
      [...this.plain, ...(this.replicated ? [this.replicated.primary] : []), ...(this.cluster ?? []).map((p) => p.primary)].map(
        async (server) => {
          const c = server.client({ maxRetriesPerRequest: 1, commandTimeout: 5000 });
          try {
            await c.flushall('ASYNC');
          } finally {
            c.disconnect();
          }
        },
      ),
    );
  }

  describe(): string {
    if (this.cluster !== undefined) {
      return this.cluster.map((p) => `${p.name}: cluster primary :${p.primary.port}, replica :${p.replica.port}`).join('\n');
    }
    if (this.replicated === undefined) return '';
    return [
      ...this.plain.map((s, i) => `shard ${i}: ${s.url}${i === this.partitionedShard ? ` (container w0 via ${this.partition?.url})` : ''}`),
      `shard ${this.plain.length}: per-container endpoints → primary :${this.replicated.primary.port}, replica :${this.replicated.replica.port}`,
    ].join('\n');
  }

  async stop(): Promise<void> {
    this.dynamo.destroy();
    await this.network.stop();
    const servers = [...this.plain, ...(this.replicated ? [this.replicated.primary, this.replicated.replica] : []), ...this.clusterServers];
    await Promise.all(servers.map((s) => s.stop().catch(() => {})));
    await this.dynamoLocal?.stop();
  }
}

async function startReplicated(network: Network, endpoints: number): Promise<ReplicatedShard> {
  const primary = await RedisServer.start({ extraArgs: SLOWLOG_ARGS });
  const link = await network.proxy(primary.port);
  const replica = await RedisServer.startReplicaOf({ port: link.port }, { extraArgs: SLOWLOG_ARGS });
  const eps = await Promise.all(Array.from({ length: endpoints }, () => network.proxy(primary.port)));
  return { primary, replica, link, endpoints: eps };
}

/**
 * A failover: replication is cut (asynchronous replication: what the primary does from now on never
 * reaches the replica), the primary keeps serving for `lagMs`, then dies; the replica is promoted and
 * each container's endpoint moves to it after its own delay in [0, skewMs] (DNS is resolved per
 * container). A new replica of the new primary is started for the next failover. Returns when every
 * endpoint has moved.
 */
export async function failover(
  network: Network,
  shard: ReplicatedShard,
  lagMs: number,
  skewMs: number,
  random: () => number,
): Promise<{ movedAt: number; newPrimary: number }> {
  await shard.link.cut();
  await new Promise((r) => setTimeout(r, lagMs));
  await shard.primary.kill();
  await shard.replica.promote();
  const target = shard.replica.port;
  await Promise.all(
    shard.endpoints.map(async (e) => {
      await new Promise((r) => setTimeout(r, random() * skewMs));
      await e.moveTo(target);
    }),
  );
  const movedAt = performance.timeOrigin + performance.now();
  const old = shard.primary;
  const oldLink = shard.link;
  shard.primary = shard.replica;
  shard.link = await network.proxy(shard.primary.port);
  shard.replica = await RedisServer.startReplicaOf({ port: shard.link.port }, { extraArgs: SLOWLOG_ARGS });
  await oldLink.stop();
  await old.stop();
  return { movedAt, newPrimary: shard.primary.port };
}

/** One command on a new connection to `server` (cluster administration; never a client container's). */
async function adminCall(server: RedisServer, ...args: (string | number)[]): Promise<unknown> {
  const c = server.client({ maxRetriesPerRequest: 1, commandTimeout: 5000 });
  try {
    return await c.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    c.disconnect();
  }
}

async function roleOf(server: RedisServer): Promise<string | undefined> {
  const text = String(await adminCall(server, 'INFO', 'replication').catch(() => ''));
  return /^role:(\w+)/m.exec(text)?.[1];
}

async function waitFor(what: string, boundMs: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + boundMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > until) throw new Error(`cluster: never happened within ${boundMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Cluster mode's failover, as shards mode's: the replica stops replicating (SIGSTOP, so what the primary
 * does from now on never reaches it), the primary keeps serving for `lagMs`, then dies (`kill -9`); the
 * replica is continued and promoted by `CLUSTER FAILOVER TAKEOVER` (no vote: the primary is gone), and
 * clients learn it from a redirect or their next CLUSTER SLOTS. Returns when the replica is a primary;
 * `rejoin` then restarts the old primary `rejoinAfterMs` later (a replaced node is not back at once), as
 * a replica of the new one, and waits for its link, so that the next failover of the pair has a replica.
 */
export async function clusterFailover(
  pair: ClusterShard,
  lagMs: number,
): Promise<{ movedAt: number; oldPrimary: number; newPrimary: number; rejoin: (rejoinAfterMs: number) => Promise<void> }> {
  const { primary, replica } = pair;
  replica.pause();
  try {
    await new Promise((r) => setTimeout(r, lagMs));
    await primary.kill();
  } finally {
    replica.resume();
  }
  await adminCall(replica, 'CLUSTER', 'FAILOVER', 'TAKEOVER');
  await waitFor(`role:master on ${replica.url}`, 10_000, async () => (await roleOf(replica)) === 'master');
  const movedAt = performance.timeOrigin + performance.now();
  pair.primary = replica;
  pair.replica = primary;
  return {
    movedAt,
    oldPrimary: primary.port,
    newPrimary: replica.port,
    rejoin: async (rejoinAfterMs) => {
      await new Promise((r) => setTimeout(r, rejoinAfterMs));
      // Its nodes.conf is kept: it learns from the cluster that it was replaced, and follows the new primary.
      await primary.startAgain();
      await waitFor(`${primary.url} a linked replica again`, 30_000, async () => {
        const text = String(await adminCall(primary, 'INFO', 'replication'));
        return /^role:slave/m.test(text) && /^master_link_status:up/m.test(text);
      });
    },
  };
}

/**
 * A slot migration under load, as `redis-cli --cluster reshard` does it, one slot at a time: the slots of
 * up to `count` keys sampled on `from`'s primary (RANDOMKEY: the slots that hold entries, hot ones more
 * likely), each set IMPORTING on the target and MIGRATING on the source, its keys moved by MIGRATE in
 * batches with `pauseMs` of load between the steps (clients meet ASK meanwhile), then given to the target
 * by SETSLOT NODE on the target, the source and every other node (clients meet MOVED).
 */
export async function migrateSlots(
  servers: readonly ClusterShard[],
  from: ClusterShard,
  to: ClusterShard,
  count: number,
  pauseMs: number,
): Promise<{ slots: number[]; keysMoved: number; migrateErrors: string[] }> {
  const source = from.primary;
  const target = to.primary;
  const [sourceId, targetId] = [String(await adminCall(source, 'CLUSTER', 'MYID')), String(await adminCall(target, 'CLUSTER', 'MYID'))];
  const slots: number[] = [];
  for (let i = 0; i < 4 * count && slots.length < count; i++) {
    const key = (await adminCall(source, 'RANDOMKEY')) as string | null;
    if (key === null) break;
    const slot = Number(await adminCall(source, 'CLUSTER', 'KEYSLOT', key));
    if (!slots.includes(slot)) slots.push(slot);
  }
  let keysMoved = 0;
  const migrateErrors: string[] = [];
  const pause = (): Promise<void> => new Promise((r) => setTimeout(r, pauseMs));
  for (const slot of slots) {
    await adminCall(target, 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', sourceId);
    await adminCall(source, 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId);
    await pause();
    for (let round = 0; round < 20; round++) {
      const keys = (await adminCall(source, 'CLUSTER', 'GETKEYSINSLOT', slot, 10)) as string[];
      if (keys.length === 0) break;
      try {
        await adminCall(source, 'MIGRATE', '127.0.0.1', target.port, '', 0, 5000, 'KEYS', ...keys);
        keysMoved += keys.length;
      } catch (err) {
        migrateErrors.push(`slot ${slot}: ${(err as Error).message}`.slice(0, 160));
      }
      await pause();
    }
    await adminCall(target, 'CLUSTER', 'SETSLOT', slot, 'NODE', targetId);
    await adminCall(source, 'CLUSTER', 'SETSLOT', slot, 'NODE', targetId);
    for (const pair of servers) {
      for (const s of [pair.primary, pair.replica]) {
        if (s !== source && s !== target) await adminCall(s, 'CLUSTER', 'SETSLOT', slot, 'NODE', targetId).catch(() => undefined);
      }
    }
    await pause();
  }
  return { slots, keysMoved, migrateErrors };
}
