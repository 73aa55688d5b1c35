import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../../lib/config.ts';
import { ItemCache, type ItemCacheOptions } from '../../lib/item-cache.ts';
import type { ResolvedKey } from '../../lib/keys.ts';
import { exampleTables, type TableDefinition } from '../../lib/tables.ts';
import { createParkingTable, createTables } from '../../infra/local/create-tables.ts';
import { RedisServer } from './redis-server.ts';

export function dynamoEndpoint(): string {
  const e = process.env.DYNAMODB_ENDPOINT;
  if (!e) throw new Error('DYNAMODB_ENDPOINT is not set: run the tests with `npm test` (test/run.ts starts DynamoDB Local)');
  return e;
}

export function rawDynamoClient(): DynamoDBClient {
  return new DynamoDBClient({
    endpoint: dynamoEndpoint(),
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
}

/** A fresh stage prefix, so each test file has tables of its own in the shared DynamoDB Local. */
export function freshPrefix(): string {
  return `t${randomBytes(4).toString('hex')}-`;
}

export interface TestStack {
  prefix: string;
  servers: RedisServer[];
  tables: readonly TableDefinition[];
  dynamo: DynamoDBClient;
  env: {
    CACHE_NODES: string;
    DYNAMODB_ENDPOINT: string;
    TABLE_PREFIX: string;
    CACHE_COMMAND_TIMEOUT_MS: string;
    DYNAMODB_TIMEOUT_MS: string;
    DYNAMODB_DEADLINE_MS: string;
    STREAM_PARKING_TABLE?: string;
  };
  /** The parking table's physical name (STREAM_PARKING_TABLE of `env`), when asked for. */
  parkingTable: string | undefined;
  /** A new, independent library instance (its own clients and node health), as a Lambda container has. */
  cache(overrides?: Record<string, string>, options?: Omit<ItemCacheOptions, 'config' | 'tables'>): ItemCache;
  config(overrides?: Record<string, string>): Config;
  /** The redis-server that holds an item's entry for this cache. */
  serverOf(cache: ItemCache, rk: ResolvedKey): RedisServer;
  /** `count` users (`<tag>-<n>`) whose entries live on different redis-servers, with their servers. */
  usersOnDistinctServers(cache: ItemCache, tag: string, count?: number): { key: { userId: string }; server: RedisServer }[];
  stop(): Promise<void>;
}

/** Redis shards spawned for the test, tables created under a fresh prefix in DynamoDB Local. */
export async function startStack(
  opts: { shards?: number; tables?: readonly TableDefinition[]; redis?: Parameters<typeof RedisServer.start>[0]; parking?: boolean } = {},
): Promise<TestStack> {
  const prefix = freshPrefix();
  const tables = opts.tables ?? exampleTables;
  const dynamo = rawDynamoClient();
  const servers = await Promise.all(Array.from({ length: opts.shards ?? 3 }, () => RedisServer.start(opts.redis)));
  await createTables(dynamo, tables, prefix);
  const parkingTable = opts.parking ? await createParkingTable(dynamo, prefix) : undefined;
  const env = {
    CACHE_NODES: servers.map((s) => s.url).join(','),
    DYNAMODB_ENDPOINT: dynamoEndpoint(),
    TABLE_PREFIX: prefix,
    // Generous for a shared 2-core machine: a starved test process must not look like a dead node,
    // and DynamoDB Local (a JVM) must not look like a DynamoDB that lost its answer.
    CACHE_COMMAND_TIMEOUT_MS: '500',
    DYNAMODB_TIMEOUT_MS: '3000',
    DYNAMODB_DEADLINE_MS: '6000',
    ...(parkingTable !== undefined ? { STREAM_PARKING_TABLE: parkingTable } : {}),
  };
  const caches: ItemCache[] = [];
  const config = (overrides: Record<string, string> = {}): Config => loadConfig({ ...env, ...overrides });
  const serverOf = (cache: ItemCache, rk: ResolvedKey): RedisServer => {
    const node = cache.nodeFor(rk);
    const server = servers.find((s) => node?.address.endsWith(`:${s.port}`));
    if (!server) throw new Error(`no server of this stack holds ${rk.redisKey}`);
    return server;
  };
  return {
    prefix,
    servers,
    tables,
    dynamo,
    env,
    parkingTable,
    config,
    cache(overrides = {}, options = {}) {
      const c = new ItemCache({ ...options, config: config(overrides), tables });
      caches.push(c);
      return c;
    },
    serverOf,
    usersOnDistinctServers(cache, tag, count = 2) {
      if (count > servers.length) throw new Error(`${count} users on distinct servers, but the stack has ${servers.length}`);
      const found: { key: { userId: string }; server: RedisServer }[] = [];
      for (let i = 0; found.length < count; i++) {
        const key = { userId: `${tag}-${i}` };
        const server = serverOf(cache, cache.resolve('users', key));
        if (!found.some((f) => f.server === server)) found.push({ key, server });
      }
      return found;
    },
    async stop() {
      await Promise.all(caches.map((c) => c.close()));
      await Promise.all(servers.map((s) => s.stop()));
      dynamo.destroy();
    },
  };
}

/** A point in the protocol where a test holds one client while others run. */
export class Gate {
  private release!: () => void;
  private readonly opened: Promise<void>;
  private reachedResolve!: () => void;
  /** Resolves when a client has arrived at the gate. */
  readonly reached: Promise<void>;

  constructor() {
    this.opened = new Promise((r) => (this.release = r));
    this.reached = new Promise((r) => (this.reachedResolve = r));
  }

  /** Called by the held client: signals arrival, waits to be let through. */
  async hold(): Promise<void> {
    this.reachedResolve();
    await this.opened;
  }

  open(): void {
    this.release();
  }
}

/** A hand-driven clock for the node state machines (ItemCacheOptions.clock). */
export function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let t = Date.now();
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** Polls `check` until it holds; the bound only keeps a broken system from hanging the run. */
export async function eventually(what: string, check: () => Promise<boolean>, boundMs = 20_000): Promise<void> {
  const end = Date.now() + boundMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
