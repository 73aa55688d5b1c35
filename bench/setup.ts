/**
 * The bench's own services and data: DynamoDB Local (started here unless an endpoint is given),
 * three `redis-server` shards on free ports (never 6379), the example tables under a fresh prefix,
 * and helpers to load items and to count what DynamoDB is asked to read.
 */
import { randomBytes } from 'node:crypto';
import { BatchWriteItemCommand, DynamoDBClient, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { Redis } from 'ioredis';
import { startDynamoDbLocal, localDynamoClientConfig, type DynamoDbLocal } from '../infra/local/dynamodb-local.ts';
import { createTables } from '../infra/local/create-tables.ts';
import { RedisServer } from '../infra/local/redis-server.ts';
import { freePort } from '../infra/local/ports.ts';
import { loadConfig, type Config } from '../lib/config.ts';
import { ItemCache, type ItemCacheOptions } from '../lib/item-cache.ts';
import { exampleTables } from '../lib/tables.ts';
import { toAttributes, type Item } from '../lib/codec.ts';

export type Attributes = Record<string, AttributeValue>;

export const TABLE = 'users';

export interface BenchStack {
  prefix: string;
  servers: RedisServer[];
  dynamoEndpoint: string;
  /** What a Lambda container of this stack would have in its environment. */
  env: Record<string, string>;
  /** A plain DynamoDB client (the "without the cache" side). */
  dynamo: DynamoDBClient;
  /** Plain ioredis clients, one per shard, auto-pipelined (the floor). */
  raw: Redis[];
  /** ioredis clients with the library's defaults untouched (no auto-pipelining), one per shard. */
  rawDefaults: Redis[];
  physicalTable: string;
  config(overrides?: Record<string, string>): Config;
  /** A new library instance (a container of its own: clients, scripts, node health). */
  cache(overrides?: Record<string, string>, options?: Omit<ItemCacheOptions, 'config' | 'tables'>): ItemCache;
  stop(): Promise<void>;
}

export async function startStack(log: (m: string) => void, dynamoEndpoint?: string): Promise<BenchStack> {
  let local: DynamoDbLocal | undefined;
  let endpoint = dynamoEndpoint;
  const servers: RedisServer[] = [];
  try {
    const t0 = Date.now();
    const redisStarting = Promise.all([0, 1, 2].map(() => RedisServer.start()));
    if (endpoint === undefined) {
      local = await startDynamoDbLocal(await freePort());
      endpoint = local.endpoint;
    }
    servers.push(...(await redisStarting));
    log(
      `services up in ${Date.now() - t0} ms: DynamoDB ${endpoint}${local ? ' (started here)' : ''}, redis ${servers.map((s) => s.port).join(', ')}`,
    );
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    await local?.stop();
    throw err;
  }
  const prefix = `bench${randomBytes(3).toString('hex')}-`;
  const dynamo = new DynamoDBClient({ ...localDynamoClientConfig(endpoint), maxAttempts: 3 });
  await createTables(dynamo, exampleTables, prefix);
  const env: Record<string, string> = {
    CACHE_NODES: servers.map((s) => s.url).join(','),
    DYNAMODB_ENDPOINT: endpoint,
    TABLE_PREFIX: prefix,
    AWS_REGION: 'us-east-1',
    // The default (250 ms) is the production setting; on this shared 2-core machine a 64-way run
    // of 100-key batches can stall the event loop past it, and a single timeout marks a node down
    // for minutes, which would turn every later figure into a bypass. The timeout's cost on the
    // hit path (one timer per command) does not depend on its value.
    CACHE_COMMAND_TIMEOUT_MS: '2000',
    // Likewise DynamoDB Local (a JVM sharing the two cores) under a 64-way write loop can take longer
    // than the production 1 s an attempt: a timeout there aborts the whole run, and the figures are
    // latencies, which no timeout shortens (the test stacks use the same values).
    DYNAMODB_TIMEOUT_MS: '3000',
    DYNAMODB_DEADLINE_MS: '6000',
  };
  const raw = servers.map((s) => s.client({ enableAutoPipelining: true }));
  const rawDefaults = servers.map((s) => s.client({}));
  const caches: ItemCache[] = [];
  const config = (overrides: Record<string, string> = {}): Config => loadConfig({ ...env, ...overrides });
  return {
    prefix,
    servers,
    dynamoEndpoint: endpoint,
    env,
    dynamo,
    raw,
    rawDefaults,
    physicalTable: prefix + TABLE,
    config,
    cache(overrides = {}, options = {}) {
      const c = new ItemCache({ ...options, config: config(overrides), tables: exampleTables });
      caches.push(c);
      return c;
    },
    async stop() {
      await Promise.all(caches.map((c) => c.close().catch(() => {})));
      [...raw, ...rawDefaults].forEach((c) => c.disconnect());
      dynamo.destroy();
      await Promise.all(servers.map((s) => s.stop()));
      await local?.stop();
    },
  };
}

/** Waits until every node of a library instance is connected, its epoch verified: a warm container. */
export async function ready(cache: ItemCache, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Its shard map registered on the nodes (lib/cache/maps.ts), as a container's first request does.
  await cache.shards.view?.refresh();
  while (!cache.shards.nodes.every((n) => n.readable)) {
    if (Date.now() > deadline) throw new Error(`cache nodes not ready: ${JSON.stringify(cache.health())}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A user item of the example application: ~250 bytes of JSON, no nested numbers. */
export function userItem(userId: string, i: number): Item {
  return {
    userId,
    name: `User number ${i}`,
    email: `user${i}@example.com`,
    age: 18 + (i % 60),
    active: i % 3 !== 0,
    plan: ['free', 'pro', 'team'][i % 3],
    tags: ['alpha', 'beta', 'gamma'].slice(0, 1 + (i % 3)),
    createdAt: new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString(),
    score: (i * 7919) % 10_000,
  };
}

export function userAttributes(userId: string, i: number): Attributes {
  return { ...toAttributes(userItem(userId, i)), _version: { N: '1' } };
}

/** Runs `each` over consecutive chunks of `items`, `concurrency` chunks at a time. */
export async function inChunks<T>(
  items: readonly T[],
  size: number,
  concurrency: number,
  each: (chunk: T[]) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let start = next; start < items.length; start = next) {
      next += size;
      await each(items.slice(start, start + size));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Writes items straight to DynamoDB (BatchWriteItem, 25 a request, `concurrency` requests at a time). */
export async function loadItems(dynamo: DynamoDBClient, table: string, items: Attributes[], concurrency = 8): Promise<void> {
  await inChunks(items, 25, concurrency, async (chunk) => {
    let requests = chunk.map((Item) => ({ PutRequest: { Item } }));
    for (let attempt = 0; requests.length > 0; attempt++) {
      if (attempt > 10) throw new Error('BatchWriteItem left items unprocessed after 10 retries');
      if (attempt > 0) await new Promise((r) => setTimeout(r, 20 * 2 ** Math.min(attempt, 5)));
      const out = await dynamo.send(new BatchWriteItemCommand({ RequestItems: { [table]: requests } }));
      requests = (out.UnprocessedItems?.[table] ?? []) as typeof requests;
    }
  });
}

/** Read traffic a DynamoDB client sent, counted by a middleware (and the read units DynamoDB reported). */
export interface ReadCounter {
  getItem: number;
  batchGetItem: number;
  /** Keys requested through BatchGetItem (retries of unprocessed keys included). */
  batchKeys: number;
  /** Read capacity units DynamoDB reported consuming for those reads. */
  readUnits: number;
  reset(): void;
}

/**
 * A DynamoDB client whose GetItem/BatchGetItem calls are counted. With `consumed`, each read asks
 * DynamoDB for ReturnConsumedCapacity=TOTAL, so the units are DynamoDB's own accounting.
 */
export function countingDynamoClient(endpoint: string, consumed: boolean): { client: DynamoDBClient; counter: ReadCounter } {
  const counter: ReadCounter = {
    getItem: 0,
    batchGetItem: 0,
    batchKeys: 0,
    readUnits: 0,
    reset() {
      this.getItem = 0;
      this.batchGetItem = 0;
      this.batchKeys = 0;
      this.readUnits = 0;
    },
  };
  const client = new DynamoDBClient({ ...localDynamoClientConfig(endpoint), maxAttempts: 3 });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName;
      const isRead = name === 'GetItemCommand' || name === 'BatchGetItemCommand';
      if (isRead) {
        const input = args.input as Record<string, unknown> & { RequestItems?: Record<string, { Keys?: unknown[] }> };
        if (name === 'GetItemCommand') counter.getItem++;
        else {
          counter.batchGetItem++;
          for (const t of Object.values(input.RequestItems ?? {})) counter.batchKeys += t.Keys?.length ?? 0;
        }
        if (consumed) args = { ...args, input: { ...input, ReturnConsumedCapacity: 'TOTAL' } };
      }
      const result = await next(args);
      if (isRead && consumed) {
        const cc = (result.output as { ConsumedCapacity?: { CapacityUnits?: number } | { CapacityUnits?: number }[] }).ConsumedCapacity;
        for (const c of Array.isArray(cc) ? cc : cc ? [cc] : []) counter.readUnits += c.CapacityUnits ?? 0;
      }
      return result;
    },
    { step: 'initialize', name: 'benchReadCounter' },
  );
  return { client, counter };
}
