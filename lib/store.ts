import {
  BatchGetItemCommand,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import type { StoreConfig } from './config.ts';
import { fromAttributes, toAttributes, type Attributes } from './codec.ts';
import {
  CacheLibraryError,
  ItemNotFoundError,
  ItemTooLargeError,
  StoreUnavailableError,
  ValidationError,
  VersionMismatchError,
} from './errors.ts';
import { resolveKey, type KeyValue, type ResolvedKey } from './keys.ts';
import type { TableDefinition, TableRegistry } from './tables.ts';

export type { Attributes } from './codec.ts';

export interface WriteOptions {
  /** Write only if the item is at this version (HTTP If-Match); 0 = exists without a version. */
  ifVersion?: number;
}

/** BatchGetItem's limit on keys a request. */
const BATCH_GET_LIMIT = 100;
const UNPROCESSED_RETRIES = 8;

export function versionOf(table: TableDefinition, av: Attributes | undefined): number | undefined {
  if (av === undefined) return undefined;
  const n = av[table.versionAttribute]?.N;
  return n === undefined ? 0 : Number(n);
}

function isConditionFailure(err: unknown): err is Error & { Item?: Attributes } {
  return err instanceof Error && err.name === 'ConditionalCheckFailedException';
}

/** The DynamoDB client the settings describe: region, endpoint, per-attempt timeout, attempts. */
export function dynamoClientFor(config: StoreConfig): DynamoDBClient {
  return new DynamoDBClient({
    region: config.region,
    endpoint: config.endpoint,
    maxAttempts: config.maxAttempts,
    requestHandler: { requestTimeout: config.timeoutMs, connectionTimeout: config.timeoutMs },
    credentials: config.localCredentials,
  });
}

/** One place maps DynamoDB's failures onto the library's errors. */
export function mapStoreError(err: unknown): Error {
  if (err instanceof CacheLibraryError) return err;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };
  const message = e.message ?? String(err);
  if (e.name === 'ValidationException') {
    if (/item size/i.test(message) || /size has exceeded/i.test(message)) return new ItemTooLargeError(message);
    return new ValidationError('item', message);
  }
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 400 && status < 500 && !/throttl|limit|exceeded/i.test(`${e.name} ${message}`)) {
    return new StoreUnavailableError(`DynamoDB refused the request: ${e.name}: ${message}`, { cause: err });
  }
  return new StoreUnavailableError(`DynamoDB is unavailable: ${e.name ?? 'Error'}: ${message}`, { cause: err });
}

/**
 * DynamoDB access. Reads are strongly consistent (a fill must see every acknowledged write) and
 * return DynamoDB's own attribute values, which the cache keeps as they are (G4). Every write
 * increments the table's version attribute atomically, in the same request.
 */
export class ItemStore {
  readonly client: DynamoDBClient;

  constructor(
    config: StoreConfig,
    private readonly tables: TableRegistry,
    client?: DynamoDBClient,
  ) {
    this.client = client ?? dynamoClientFor(config);
  }

  private name(table: TableDefinition): string {
    return this.tables.physicalName(table);
  }

  async get(rk: ResolvedKey): Promise<Attributes | undefined> {
    try {
      const out = await this.client.send(
        new GetItemCommand({ TableName: this.name(rk.table), Key: toAttributes(rk.key), ConsistentRead: true }),
      );
      return out.Item;
    } catch (err) {
      throw mapStoreError(err);
    }
  }

  /** BatchGetItem (consistent), 100 keys a request, retrying UnprocessedKeys with backoff. */
  async getMany(table: TableDefinition, rks: ResolvedKey[]): Promise<(Attributes | undefined)[]> {
    const physical = this.name(table);
    const found = new Map<string, Attributes>();
    const unique = [...new Map(rks.map((rk) => [rk.redisKey, rk])).values()];
    for (let i = 0; i < unique.length; i += BATCH_GET_LIMIT) {
      let keys: Attributes[] | undefined = unique.slice(i, i + BATCH_GET_LIMIT).map((rk) => toAttributes(rk.key));
      for (let attempt = 0; keys && keys.length > 0; attempt++) {
        if (attempt > UNPROCESSED_RETRIES) throw new StoreUnavailableError('DynamoDB left keys unprocessed after retries');
        if (attempt > 0) await new Promise((r) => setTimeout(r, Math.min(25 * 2 ** attempt, 1000)));
        let out;
        try {
          out = await this.client.send(new BatchGetItemCommand({ RequestItems: { [physical]: { Keys: keys, ConsistentRead: true } } }));
        } catch (err) {
          throw mapStoreError(err);
        }
        for (const av of out.Responses?.[physical] ?? []) {
          found.set(resolveKey(table, physical, fromAttributes(av)).redisKey, av);
        }
        keys = out.UnprocessedKeys?.[physical]?.Keys;
      }
    }
    return rks.map((rk) => found.get(rk.redisKey));
  }

  /**
   * Replaces the item. The new version is the old one + 1, made atomic by a condition on the old
   * version; the first guess comes from the cache (`hint`), a wrong one costs one retry (the
   * failed condition returns the current item).
   */
  async put(rk: ResolvedKey, base: Attributes, opts: WriteOptions & { hint?: number; budgetMs: number }): Promise<Attributes> {
    const table = rk.table;
    // Each lost race returns the winner's version, so the next try usually wins; under heavy
    // contention keep trying (with a little jitter) within the budget the writer's fence allows.
    const deadline = Date.now() + opts.budgetMs;
    let expected = opts.ifVersion ?? opts.hint ?? 0;
    for (let attempt = 1; ; attempt++) {
      const item: Attributes = { ...base, [table.versionAttribute]: { N: String(expected + 1) } };
      const condition = versionCondition(table, expected, opts.ifVersion !== undefined);
      try {
        await this.client.send(
          new PutItemCommand({
            TableName: this.name(table),
            Item: item,
            ...condition,
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return item;
      } catch (err) {
        if (!isConditionFailure(err)) throw mapStoreError(err);
        const current = versionOf(table, err.Item);
        if (opts.ifVersion !== undefined) throw new VersionMismatchError(opts.ifVersion, current);
        if (Date.now() > deadline) throw new StoreUnavailableError(`the item changed under each of ${attempt} attempts to write it; retry`);
        expected = current ?? 0;
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 * attempt, 20)));
      }
    }
  }

  /** Sets and removes top-level attributes of an existing item; increments its version. */
  async update(rk: ResolvedKey, set: Attributes, remove: string[], opts: WriteOptions): Promise<Attributes> {
    const table = rk.table;
    const names: Record<string, string> = { '#ver': table.versionAttribute, '#hk': table.hashKey.name };
    const values: Attributes = { ':one': { N: '1' } };
    const sets: string[] = [];
    Object.entries(set).forEach(([name, value], i) => {
      names[`#s${i}`] = name;
      values[`:s${i}`] = value;
      sets.push(`#s${i} = :s${i}`);
    });
    const removes = remove.map((name, i) => {
      names[`#r${i}`] = name;
      return `#r${i}`;
    });
    let expression = `ADD #ver :one`;
    if (sets.length) expression = `SET ${sets.join(', ')} ${expression}`;
    if (removes.length) expression += ` REMOVE ${removes.join(', ')}`;
    let condition = 'attribute_exists(#hk)';
    if (opts.ifVersion !== undefined) {
      if (opts.ifVersion === 0) condition += ' AND attribute_not_exists(#ver)';
      else {
        condition += ' AND #ver = :expected';
        values[':expected'] = { N: String(opts.ifVersion) };
      }
    }
    try {
      const out = await this.client.send(
        new UpdateItemCommand({
          TableName: this.name(table),
          Key: toAttributes(rk.key),
          UpdateExpression: expression,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return out.Attributes as Attributes;
    } catch (err) {
      if (!isConditionFailure(err)) throw mapStoreError(err);
      if (err.Item === undefined) throw new ItemNotFoundError();
      throw new VersionMismatchError(opts.ifVersion ?? 0, versionOf(table, err.Item));
    }
  }

  /** Deletes the item; returns what was there (undefined when nothing was). */
  async delete(rk: ResolvedKey, opts: WriteOptions): Promise<Attributes | undefined> {
    const table = rk.table;
    const condition = opts.ifVersion === undefined ? {} : versionCondition(table, opts.ifVersion, true);
    try {
      const out = await this.client.send(
        new DeleteItemCommand({
          TableName: this.name(table),
          Key: toAttributes(rk.key),
          ReturnValues: 'ALL_OLD',
          ...condition,
          ReturnValuesOnConditionCheckFailure: opts.ifVersion === undefined ? undefined : 'ALL_OLD',
        }),
      );
      return out.Attributes;
    } catch (err) {
      if (!isConditionFailure(err)) throw mapStoreError(err);
      throw new VersionMismatchError(opts.ifVersion ?? 0, versionOf(table, err.Item));
    }
  }

  /** Writes a parked invalidation (lib/stream/parking.ts) to the parking table. */
  async park(parkingTable: string, item: Attributes): Promise<void> {
    await this.client.send(new PutItemCommand({ TableName: parkingTable, Item: item }));
  }

  /**
   * Deletes a parked invalidation once applied, unless a newer parking of the same record arrived
   * meanwhile (another `parkedAt`: then nothing is deleted).
   */
  async unpark(parkingTable: string, id: string, parkedAt: { N: string }): Promise<void> {
    try {
      await this.client.send(
        new DeleteItemCommand({
          TableName: parkingTable,
          Key: { id: { S: id } },
          ConditionExpression: 'parkedAt = :at',
          ExpressionAttributeValues: { ':at': parkedAt },
        }),
      );
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
    }
  }

  /** One page of a partition, in range-key order; served from DynamoDB. */
  async queryPartition(
    table: TableDefinition,
    hash: KeyValue,
    limit: number,
    cursor: Attributes | undefined,
  ): Promise<{ items: Attributes[]; next: Attributes | undefined }> {
    try {
      const out = await this.client.send(
        new QueryCommand({
          TableName: this.name(table),
          KeyConditionExpression: '#hk = :hk',
          ExpressionAttributeNames: { '#hk': table.hashKey.name },
          ExpressionAttributeValues: toAttributes({ ':hk': hash }),
          Limit: limit,
          ExclusiveStartKey: cursor,
          ConsistentRead: true,
        }),
      );
      return { items: out.Items ?? [], next: out.LastEvaluatedKey };
    } catch (err) {
      throw mapStoreError(err);
    }
  }

  /** One page of the parked invalidations (lib/stream/sweep.ts decides, item by item, what to retry). */
  async scanParked(parkingTable: string, cursor: Attributes | undefined): Promise<{ items: Attributes[]; next: Attributes | undefined }> {
    const out = await this.client.send(new ScanCommand({ TableName: parkingTable, ExclusiveStartKey: cursor }));
    return { items: out.Items ?? [], next: out.LastEvaluatedKey };
  }

  /**
   * Records a failed attempt on a parked invalidation: its new attempt count, when it is due next
   * and why it failed; only if it is still the parking (`parkedAt`) and the attempt (`attempts`)
   * the caller read, so a re-parking or a concurrent sweep is never overwritten. False when not.
   */
  async deferParked(
    parkingTable: string,
    id: string,
    seen: { parkedAt: { N: string }; attempts: number },
    next: { attempts: number; nextAttemptAt: number; reason: string },
  ): Promise<boolean> {
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: parkingTable,
          Key: { id: { S: id } },
          UpdateExpression: 'SET attempts = :n, nextAttemptAt = :next, reason = :reason',
          ConditionExpression:
            seen.attempts === 0
              ? 'parkedAt = :at AND (attribute_not_exists(attempts) OR attempts = :seen)'
              : 'parkedAt = :at AND attempts = :seen',
          ExpressionAttributeValues: {
            ':n': { N: String(next.attempts) },
            ':next': { N: String(next.nextAttemptAt) },
            ':reason': { S: next.reason },
            ':at': seen.parkedAt,
            ':seen': { N: String(seen.attempts) },
          },
        }),
      );
      return true;
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
      return false;
    }
  }
}

function versionCondition(
  table: TableDefinition,
  expected: number,
  mustExist: boolean,
): { ConditionExpression: string; ExpressionAttributeNames: Record<string, string>; ExpressionAttributeValues?: Attributes } {
  if (expected === 0) {
    return mustExist
      ? {
          ConditionExpression: 'attribute_exists(#hk) AND attribute_not_exists(#ver)',
          ExpressionAttributeNames: { '#hk': table.hashKey.name, '#ver': table.versionAttribute },
        }
      : { ConditionExpression: 'attribute_not_exists(#ver)', ExpressionAttributeNames: { '#ver': table.versionAttribute } };
  }
  return {
    ConditionExpression: '#ver = :expected',
    ExpressionAttributeNames: { '#ver': table.versionAttribute },
    ExpressionAttributeValues: { ':expected': { N: String(expected) } },
  };
}
