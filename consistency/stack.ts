/**
 * The services a run starts for itself: DynamoDB Local (unless DYNAMODB_ENDPOINT names one), tables
 * under a fresh prefix with streams on, plain redis-server shards, one shard that is a primary with
 * a replica behind a movable endpoint (for failovers), and a proxy that can partition one client
 * container from one shard.
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

export class Stack {
  private dynamoLocal: DynamoDbLocal | undefined;
  readonly dynamo: DynamoDBClient;
  /** Where the Streams consumer parks what it cannot apply (lib/stream/parking.ts). */
  parkingTable = '';

  private constructor(
    readonly endpoint: string,
    readonly prefix: string,
    readonly plain: RedisServer[],
    readonly replicated: ReplicatedShard,
    /** Client container 0 reaches plain shard `partitionedShard` through this proxy. */
    readonly partition: RemoteProxy,
    readonly network: Network,
    readonly partitionedShard: number,
    /**
     * The client containers' way to DynamoDB (their DYNAMODB_ENDPOINT): a TCP proxy that the
     * `blackhole` fault cuts (accepts, never answers; open sockets go silent). The Streams consumer,
     * the replayer, the out-of-band writer and the probe reach DynamoDB directly.
     */
    readonly dynamoProxy: RemoteProxy,
    dynamoLocal: DynamoDbLocal | undefined,
  ) {
    this.dynamoLocal = dynamoLocal;
    this.dynamo = new DynamoDBClient({ ...localDynamoClientConfig(endpoint), maxAttempts: 1 });
  }

  static async start(opts: { shards: number; containers: number; dynamoEndpoint?: string; log: (m: string) => void }): Promise<Stack> {
    let dynamoLocal: DynamoDbLocal | undefined;
    let endpoint = opts.dynamoEndpoint;
    if (endpoint === undefined) {
      dynamoLocal = await startDynamoDbLocal(await freePort());
      endpoint = dynamoLocal.endpoint;
      opts.log(`DynamoDB Local: ${endpoint} (pid ${dynamoLocal.pid})`);
    }
    const prefix = `cons${randomBytes(3).toString('hex')}-`;
    const network = await Network.start();
    const plain = await Promise.all(Array.from({ length: opts.shards }, () => RedisServer.start()));
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
    const list = this.plain.map((s, i) => ({
      url: container === 0 && i === this.partitionedShard ? this.partition.url : s.url,
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

  /** The port a PING to shard `name` goes to (the main thread's endpoint for the replicated shard). */
  pingPort(name: string): number {
    const i = Number(name.replace(/^shard/, ''));
    if (i < this.plain.length) return (this.plain[i] as RedisServer).port;
    const eps = this.replicated.endpoints;
    return (eps[eps.length - 1] as RemoteProxy).port;
  }

  /** FLUSHALL ASYNC on every node (the replicated shard's primary: its replica follows), as README's map-change procedure does. */
  async flushAll(): Promise<void> {
    await Promise.all(
      [...this.plain, this.replicated.primary].map(async (server) => {
        const c = server.client({ maxRetriesPerRequest: 1, commandTimeout: 5000 });
        try {
          await c.flushall('ASYNC');
        } finally {
          c.disconnect();
        }
      }),
    );
  }

  describe(): string {
    return [
      ...this.plain.map((s, i) => `shard ${i}: ${s.url}${i === this.partitionedShard ? ` (container w0 via ${this.partition.url})` : ''}`),
      `shard ${this.plain.length}: per-container endpoints → primary :${this.replicated.primary.port}, replica :${this.replicated.replica.port}`,
    ].join('\n');
  }

  async stop(): Promise<void> {
    this.dynamo.destroy();
    await this.network.stop();
    await Promise.all([...this.plain, this.replicated.primary, this.replicated.replica].map((s) => s.stop().catch(() => {})));
    await this.dynamoLocal?.stop();
  }
}

async function startReplicated(network: Network, endpoints: number): Promise<ReplicatedShard> {
  const primary = await RedisServer.start();
  const link = await network.proxy(primary.port);
  const replica = await RedisServer.startReplicaOf({ port: link.port });
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
  shard.replica = await RedisServer.startReplicaOf({ port: shard.link.port });
  await oldLink.stop();
  await old.stop();
  return { movedAt, newPrimary: shard.primary.port };
}
