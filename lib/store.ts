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
import { sentOnce } from './write-once.ts';
import type { TableDefinition, TableRegistry } from './tables.ts';
import { deadlineClock } from './clock.ts';

export type { Attributes } from './codec.ts';

export interface WriteOptions {
  /** Write only if the item is at this version (HTTP If-Match); 0 = exists without a version. */
  ifVersion?: number;
  /** Write only if the item exists, at whatever version (HTTP `If-Match: *`). */
  ifExists?: boolean;
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

/** The SDK's attempts for a failed request: past the first, an earlier attempt whose answer was lost may have been applied. */
function attemptsOf(err: unknown): number {
  return (err as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1;
}

/**
 * What bounds one library operation's DynamoDB calls, all attempts and back-off together: the SDK
 * stops waiting at `deadline` (ms since the epoch), and sends nothing from then on. A writer's fence
 * rests on this bound (G1): a request sent after it could land after the fence is gone.
 *
 * The timer alone does not stop a send: a writer starved of CPU (or paused) past its deadline reaches
 * the send before a timer armed for the time left (at least 1 ms) can fire, and the SDK's HTTP handler
 * sends unless the signal already reads as aborted. So the signal reads as aborted from the deadline on
 * (the handler checks `aborted` right before it sends each attempt, retries included); its timer
 * still aborts a request in flight.
 */
function until(deadline: number): { abortSignal: AbortSignal } {
  return { abortSignal: deadlineSignal(deadline) };
}

/**
 * The abort signal of `until`, for any DynamoDB request bounded by `deadline` (the drop-in's writes
 * too), joined with the caller's own signal when there is one.
 */
export function deadlineSignal(deadline: number, also?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(Math.max(1, Math.min(Math.ceil(deadline - deadlineClock()), 2 ** 31 - 1)));
  const timer = also === undefined ? timeout : AbortSignal.any([also, timeout]);
  const signal = {
    get aborted(): boolean {
      return timer.aborted || deadlineClock() >= deadline;
    },
    get reason(): unknown {
      return timer.reason ?? new DeadlinePassed();
    },
    addEventListener: timer.addEventListener.bind(timer),
    removeEventListener: timer.removeEventListener.bind(timer),
    onabort: null,
  };
  return signal as unknown as AbortSignal;
}

/** Why an attempt was not sent: the operation's deadline had passed (its timer had not fired yet). */
class DeadlinePassed extends Error {
  constructor() {
    super("the operation's DynamoDB deadline passed before this attempt was sent");
    this.name = 'TimeoutError';
  }
}

/**
 * The DynamoDB client the settings describe: region, endpoint, per-attempt timeout (enforced: the
 * HTTP handler only warns past `requestTimeout` unless told to throw), attempts.
 */
export function dynamoClientFor(config: StoreConfig): DynamoDBClient {
  return new DynamoDBClient({
    region: config.region,
    endpoint: config.endpoint,
    maxAttempts: config.maxAttempts,
    requestHandler: { requestTimeout: config.timeoutMs, connectionTimeout: config.timeoutMs, throwOnRequestTimeout: true },
    credentials: config.localCredentials,
  });
}

/** One place maps DynamoDB's failures onto the library's errors. */
export function mapStoreError(err: unknown): Error {
  if (err instanceof CacheLibraryError) return err;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };
  const message = e.message ?? String(err);
  if (e.name === 'AbortError' || e.name === 'TimeoutError') {
    return new StoreUnavailableError(
      'DynamoDB did not answer in time (DYNAMODB_DEADLINE_MS, DYNAMODB_TIMEOUT_MS); a write may or may not have been applied',
      { cause: err },
    );
  }
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
    private readonly config: StoreConfig,
    private readonly tables: TableRegistry,
    client?: DynamoDBClient,
  ) {
    this.client = client ?? dynamoClientFor(config);
  }

  private name(table: TableDefinition): string {
    return this.tables.physicalName(table);
  }

  /** When an operation that was given no deadline must be over. */
  private deadline(): number {
    return deadlineClock() + this.config.deadlineMs;
  }

  async get(rk: ResolvedKey, deadline = this.deadline()): Promise<Attributes | undefined> {
    try {
      const out = await this.client.send(
        new GetItemCommand({ TableName: this.name(rk.table), Key: toAttributes(rk.key), ConsistentRead: true }),
        until(deadline),
      );
      return out.Item;
    } catch (err) {
      throw mapStoreError(err);
    }
  }

  /** BatchGetItem (consistent), 100 keys a request, retrying UnprocessedKeys with backoff. */
  async getMany(table: TableDefinition, rks: ResolvedKey[], deadline = this.deadline()): Promise<(Attributes | undefined)[]> {
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
          out = await this.client.send(
            new BatchGetItemCommand({ RequestItems: { [physical]: { Keys: keys, ConsistentRead: true } } }),
            until(deadline),
          );
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
   * failed condition returns the current item). `sending` is told each attempt's item as it is
   * sent; the item returned is the very object of the attempt that wrote it.
   */
  async put(
    rk: ResolvedKey,
    base: Attributes,
    opts: WriteOptions & { hint?: number; deadline: number; sending?: (item: Attributes) => void },
  ): Promise<Attributes> {
    const table = rk.table;
    // Each lost race returns the winner's version, so the next try usually wins; under heavy
    // contention keep trying (with a little jitter) until the deadline the writer's fence allows.
    // The one loop that retries a version: for a plain put and for `ifExists` alike.
    const deadline = opts.deadline;
    const mustExist = opts.ifVersion !== undefined || opts.ifExists === true;
    let expected = opts.ifVersion ?? opts.hint ?? (opts.ifExists ? 1 : 0);
    for (let attempt = 1; ; attempt++) {
      const item: Attributes = { ...base, [table.versionAttribute]: { N: String(expected + 1) } };
      const condition = versionCondition(table, expected, mustExist);
      opts.sending?.(item);
      try {
        await this.client.send(
          sentOnce(
            new PutItemCommand({
              TableName: this.name(table),
              Item: item,
              ...condition,
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
            }),
          ),
          until(deadline),
        );
        return item;
      } catch (err) {
        if (!isConditionFailure(err)) throw mapStoreError(err);
        // An earlier attempt whose answer was lost may have written this very item: then it is ours.
        if (attemptsOf(err) > 1 && sameAttributes(err.Item, item)) return item;
        const current = versionOf(table, err.Item);
        const nothingWritten = attemptsOf(err) === 1;
        if (opts.ifVersion !== undefined) throw new VersionMismatchError(opts.ifVersion, current, { nothingWritten });
        if (opts.ifExists && current === undefined) throw new VersionMismatchError('*', current, { nothingWritten });
        if (deadlineClock() > deadline)
          throw new StoreUnavailableError(`the item changed under each of ${attempt} attempts to write it; retry`);
        expected = current ?? 0;
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(2 * attempt, 20)));
      }
    }
  }

  /** Sets and removes top-level attributes of an existing item; increments its version. */
  async update(rk: ResolvedKey, set: Attributes, remove: string[], opts: WriteOptions & { deadline: number }): Promise<Attributes> {
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
        sentOnce(
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
        ),
        until(opts.deadline),
      );
      return out.Attributes as Attributes;
    } catch (err) {
      if (!isConditionFailure(err)) throw mapStoreError(err);
      const nothingWritten = attemptsOf(err) === 1;
      if (err.Item === undefined) throw new ItemNotFoundError(undefined, { nothingWritten });
      throw new VersionMismatchError(opts.ifVersion ?? 0, versionOf(table, err.Item), { nothingWritten });
    }
  }

  /** Deletes the item; returns what was there (undefined when nothing was). */
  async delete(rk: ResolvedKey, opts: WriteOptions & { deadline: number }): Promise<Attributes | undefined> {
    const table = rk.table;
    const condition =
      opts.ifVersion !== undefined
        ? versionCondition(table, opts.ifVersion, true)
        : opts.ifExists
          ? { ConditionExpression: 'attribute_exists(#hk)', ExpressionAttributeNames: { '#hk': table.hashKey.name } }
          : {};
    try {
      const out = await this.client.send(
        sentOnce(
          new DeleteItemCommand({
            TableName: this.name(table),
            Key: toAttributes(rk.key),
            ReturnValues: 'ALL_OLD',
            ...condition,
            ReturnValuesOnConditionCheckFailure: 'ConditionExpression' in condition ? 'ALL_OLD' : undefined,
          }),
        ),
        until(opts.deadline),
      );
      return out.Attributes;
    } catch (err) {
      if (!isConditionFailure(err)) throw mapStoreError(err);
      throw new VersionMismatchError(opts.ifVersion ?? '*', versionOf(table, err.Item), { nothingWritten: attemptsOf(err) === 1 });
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
        until(this.deadline()),
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

/** The same attributes, whatever their order (a put's item against the one DynamoDB returned). */
function sameAttributes(a: Attributes | undefined, b: Attributes): boolean {
  if (a === undefined) return false;
  const canonical = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return { $b: Buffer.from(v).toString('base64') };
    if (Array.isArray(v)) return v.map(canonical);
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(
        Object.keys(o)
          .sort()
          .map((k) => [k, canonical(o[k])]),
      );
    }
    return v;
  };
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
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
