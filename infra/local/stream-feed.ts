import { DescribeTableCommand, DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type _Record as StreamRecord,
  type Shard,
} from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { compareSequence } from '../../lib/stream/batch.ts';
import streamMappings from '../stream-mappings.cjs';

export type StreamHandler = (event: DynamoDBStreamEvent) => Promise<DynamoDBBatchResponse | void>;
export type MappingSettings = streamMappings.MappingSettings;

export interface StreamFeedOptions {
  client: DynamoDBClientConfig;
  /** Physical names of the tables whose streams to feed to `handler`. */
  tables: string[];
  handler: StreamHandler;
  /** More subscriptions, each with its own function (the parking table's replayer). */
  subscriptions?: { table: string; handler: StreamHandler }[];
  /**
   * Scheduled functions (serverless.yml's `schedule` events: the sweep every minute), invoked every
   * `everyMs` while the feed runs, one run at a time; a failure is logged.
   */
  schedules?: { everyMs: number; handler: () => Promise<unknown> }[];
  /** How often an idle shard is polled (Lambda polls a DynamoDB stream about 4 times a second). */
  pollMs?: number;
  /**
   * The event source mappings' settings: by default the deploy's (infra/stream-mappings.cjs, for
   * `largestTtlSeconds`); a test may override some.
   */
  mapping?: Partial<MappingSettings>;
  /** The largest entry TTL the deploy's record-age cut-off is derived from (default 3600, CACHE_TTL_SECONDS' default). */
  largestTtlSeconds?: number;
  log?: (message: string) => void;
  /** @internal Test seams: the Streams client (to inject faults), the clock records are aged by. */
  streamsClient?: DynamoDBStreamsClient;
  now?: () => number;
}

export interface StreamFeedStats {
  batches: number;
  records: number;
  retries: number;
  /** Batches split in two after the handler threw (bisectBatchOnFunctionError). */
  bisections: number;
  /** Records dropped unprocessed: older than maximumRecordAgeInSeconds, or past maximumRetryAttempts. */
  expired: number;
  discarded: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const seqOf = (r: StreamRecord): string => r.dynamodb?.SequenceNumber ?? '0';

/**
 * Which listed shards may start now: each once, a child only after its parent is done, as Lambda
 * reads them (per-item order). A parent that is no longer listed (trimmed after 24 h) and was never
 * started does not hold its child.
 */
export function shardsToStart(shards: readonly Shard[], started: ReadonlySet<string>, finished: ReadonlySet<string>): Shard[] {
  const listed = new Set(shards.map((s) => s.ShardId));
  return shards.filter((s) => {
    const id = s.ShardId;
    if (!id || started.has(id)) return false;
    const parent = s.ParentShardId;
    if (!parent || finished.has(parent)) return true;
    return !listed.has(parent) && !started.has(parent);
  });
}

/** The records of `records` from sequence number `from` on (stream order, numbers of any length). */
export function recordsFrom(records: readonly StreamRecord[], from: string): StreamRecord[] {
  return records.filter((r) => compareSequence(seqOf(r), from) >= 0);
}

/**
 * Reads DynamoDB Local's Streams API and invokes the handlers the way Lambda's event source
 * mappings do, with the deploy's settings (infra/stream-mappings.cjs, which serverless.yml reads):
 * each shard from its starting position (a child shard found later from its start), parents before
 * children, batches of at most batchSize in order; records older than maximumRecordAgeInSeconds
 * dropped unprocessed; with ReportBatchItemFailures a batch retried from its lowest failed
 * sequence number (without, the answer is ignored); a thrown error retries the batch, split in two
 * first when bisectBatchOnFunctionError; past maximumRetryAttempts (-1: none) the failing records
 * are dropped. Failures of the Streams API (an iterator refused, records unreadable) are retried
 * with back-off and never end a shard's loop. Differences that remain: one shard per table in
 * DynamoDB Local, and the retry back-off (doubling, capped at 2 s) is ours.
 */
export class StreamFeed {
  readonly stats: StreamFeedStats = { batches: 0, records: 0, retries: 0, bisections: 0, expired: 0, discarded: 0 };
  readonly mapping: MappingSettings;
  private readonly streams: DynamoDBStreamsClient;
  private readonly dynamo: DynamoDBClient;
  private running = false;
  private readonly loops: Promise<void>[] = [];
  private readonly started = new Set<string>();
  private readonly finished = new Set<string>();
  private paused = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly scheduled = new Set<Promise<unknown>>();

  constructor(private readonly options: StreamFeedOptions) {
    this.mapping = { ...streamMappings.mappingSettings(options.largestTtlSeconds ?? 3600), ...options.mapping };
    this.streams = options.streamsClient ?? new DynamoDBStreamsClient(options.client);
    this.dynamo = new DynamoDBClient(options.client);
  }

  async start(): Promise<void> {
    this.running = true;
    const subscriptions = [
      ...this.options.tables.map((table) => ({ table, handler: this.options.handler })),
      ...(this.options.subscriptions ?? []),
    ];
    for (const { table, handler } of subscriptions) {
      const d = await this.dynamo.send(new DescribeTableCommand({ TableName: table }));
      const arn = d.Table?.LatestStreamArn;
      if (!arn) throw new Error(`table ${table} has no stream`);
      this.loops.push(this.watchStream(arn, handler));
    }
    for (const { everyMs, handler } of this.options.schedules ?? []) {
      let running: Promise<unknown> | undefined;
      const tick = (): void => {
        if (running !== undefined || this.paused) return;
        const run = handler()
          .catch((err: unknown) => this.log(`scheduled function failed: ${String(err)}`))
          .finally(() => {
            running = undefined;
            this.scheduled.delete(run);
          });
        running = run;
        this.scheduled.add(run);
      };
      this.timers.push(setInterval(tick, everyMs));
    }
  }

  /** Stops delivering (records wait in the stream) until `resume`: a stalled consumer, for lag tests. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const t of this.timers) clearInterval(t);
    await Promise.allSettled([...this.loops, ...this.scheduled]);
    this.streams.destroy();
    this.dynamo.destroy();
  }

  private log(message: string): void {
    this.options.log?.(`stream feed: ${message}`);
  }

  private async listShards(arn: string): Promise<Shard[]> {
    const shards: Shard[] = [];
    let start: string | undefined;
    do {
      const out = await this.streams.send(new DescribeStreamCommand({ StreamArn: arn, ExclusiveStartShardId: start }));
      shards.push(...(out.StreamDescription?.Shards ?? []));
      start = out.StreamDescription?.LastEvaluatedShardId;
    } while (start);
    return shards;
  }

  /** Finds shards as they appear and starts each once its parent is done (per-item order). */
  private async watchStream(arn: string, handler: StreamHandler): Promise<void> {
    let first = true;
    while (this.running) {
      try {
        for (const shard of shardsToStart(await this.listShards(arn), this.started, this.finished)) {
          const id = shard.ShardId as string;
          this.started.add(id);
          // The mapping's starting position applies to the shards there when it starts; a shard
          // that appears later is read from its start, as Lambda does.
          const position = first ? this.mapping.startingPosition : 'TRIM_HORIZON';
          this.loops.push(this.feedShard(arn, id, handler, position));
        }
        first = false;
      } catch (err) {
        this.log(`listing shards of ${arn} failed: ${String(err)}`);
      }
      await sleep(1000);
    }
  }

  /** A shard iterator, retried with back-off until it is given or the feed stops. */
  private async iterator(arn: string, shardId: string, after: string | undefined, position: string): Promise<string | undefined> {
    for (let backoff = 100; this.running; backoff = Math.min(backoff * 2, 2000)) {
      try {
        const out = await this.streams.send(
          new GetShardIteratorCommand({
            StreamArn: arn,
            ShardId: shardId,
            ...(after
              ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: after }
              : { ShardIteratorType: position as 'TRIM_HORIZON' | 'LATEST' }),
          }),
        );
        return out.ShardIterator;
      } catch (err) {
        this.log(`GetShardIterator on ${shardId} failed, retrying: ${String(err)}`);
        await sleep(backoff);
      }
    }
    return undefined;
  }

  private async feedShard(arn: string, shardId: string, handler: StreamHandler, position: string): Promise<void> {
    try {
      await this.readShard(arn, shardId, handler, position);
    } catch (err) {
      // Not expected (every call above is guarded); logged rather than left as an unhandled rejection.
      this.log(`shard ${shardId} stopped: ${String(err)}`);
    } finally {
      this.finished.add(shardId);
    }
  }

  private async readShard(arn: string, shardId: string, handler: StreamHandler, position: string): Promise<void> {
    const { pollMs = 250 } = this.options;
    const { batchSize } = this.mapping;
    let delivered: string | undefined; // the last sequence number done with (applied or dropped)
    let iterator = await this.iterator(arn, shardId, undefined, position);
    let pending: StreamRecord[] = [];
    let window = batchSize; // halved by bisection, back to batchSize after a success
    let attempts = 0; // retries of the batch at the head of `pending`
    let backoff = 100;
    while (this.running) {
      if (this.paused) {
        await sleep(pollMs);
        continue;
      }
      if (pending.length === 0) {
        if (!iterator) break; // closed shard, fully delivered
        try {
          const out = await this.streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: batchSize }));
          pending = out.Records ?? [];
          iterator = out.NextShardIterator;
        } catch (err) {
          // DynamoDB Local invalidates an iterator taken on a shard that was still empty, and any
          // iterator expires: take a new one after the last record done with.
          const name = (err as { name?: string }).name;
          if (name === 'TrimmedDataAccessException' || name === 'ExpiredIteratorException') {
            iterator = await this.iterator(arn, shardId, delivered, position);
          } else {
            this.log(`GetRecords on ${shardId} failed: ${String(err)}`);
          }
          await sleep(pollMs);
          continue;
        }
        if (pending.length === 0) {
          await sleep(pollMs);
          continue;
        }
      }
      pending = this.dropExpired(pending, shardId);
      if (pending.length === 0) continue;
      const batch = pending.slice(0, window);
      const outcome = await this.deliver(arn, batch, handler);
      if (outcome.kind === 'done') {
        this.stats.batches++;
        this.stats.records += batch.length;
        delivered = seqOf(batch[batch.length - 1] as StreamRecord);
        pending = pending.slice(batch.length);
        window = batchSize;
        attempts = 0;
        backoff = 100;
        continue;
      }
      if (outcome.kind === 'threw' && this.mapping.bisectBatchOnFunctionError && batch.length > 1) {
        // Split and retry the first half; a split is not a retry (it does not count toward the limit).
        this.stats.bisections++;
        window = Math.ceil(batch.length / 2);
        continue;
      }
      if (outcome.kind === 'failed') {
        // Records before the lowest failed one are done: Lambda checkpoints them.
        const rest = recordsFrom(pending, outcome.from);
        if (rest.length < pending.length) delivered = seqOf(pending[pending.length - rest.length - 1] as StreamRecord);
        pending = rest;
      }
      attempts++;
      const max = this.mapping.maximumRetryAttempts;
      if (max !== -1 && attempts > max) {
        const dropped = pending.slice(0, Math.min(window, pending.length));
        this.stats.discarded += dropped.length;
        this.log(`${dropped.length} record(s) of ${shardId} dropped after ${max} retries`);
        delivered = seqOf(dropped[dropped.length - 1] as StreamRecord);
        pending = pending.slice(dropped.length);
        attempts = 0;
        window = batchSize;
        continue;
      }
      this.stats.retries++;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    }
  }

  /** Drops records older than the mapping's maximum record age (Lambda discards them unprocessed). */
  private dropExpired(records: StreamRecord[], shardId: string): StreamRecord[] {
    const maxAge = this.mapping.maximumRecordAgeInSeconds;
    if (maxAge === -1) return records;
    const now = (this.options.now ?? Date.now)();
    const fresh = records.filter((r) => {
      const created = r.dynamodb?.ApproximateCreationDateTime;
      return created === undefined || now - new Date(created).getTime() <= maxAge * 1000;
    });
    if (fresh.length < records.length) {
      this.stats.expired += records.length - fresh.length;
      this.log(`${records.length - fresh.length} record(s) of ${shardId} older than ${maxAge} s dropped`);
    }
    return fresh;
  }

  /** Invokes the handler once; what Lambda would make of its answer. */
  private async deliver(
    arn: string,
    records: StreamRecord[],
    handler: StreamHandler,
  ): Promise<{ kind: 'done' } | { kind: 'failed'; from: string } | { kind: 'threw' }> {
    let res: DynamoDBBatchResponse | void;
    try {
      res = await handler({ Records: records.map((r) => toLambdaRecord(arn, r)) });
    } catch (err) {
      this.log(`handler threw, retrying the batch: ${String(err)}`);
      return { kind: 'threw' };
    }
    // Without ReportBatchItemFailures, Lambda ignores the answer.
    if (this.mapping.functionResponseType !== 'ReportBatchItemFailures') return { kind: 'done' };
    const failures = res?.batchItemFailures ?? [];
    if (failures.length === 0) return { kind: 'done' };
    const ids = failures.map((f) => f.itemIdentifier);
    // An empty or unknown identifier fails the whole batch, as Lambda treats it.
    if (ids.some((id) => !id || !records.some((r) => seqOf(r) === id))) return { kind: 'failed', from: seqOf(records[0] as StreamRecord) };
    return { kind: 'failed', from: (ids as string[]).reduce((lo, s) => (compareSequence(s, lo) < 0 ? s : lo)) };
  }
}

/** The SDK's record in Lambda's event shape: binary as base64, times in epoch seconds, the source ARN. */
export function toLambdaRecord(arn: string, r: StreamRecord): DynamoDBRecord {
  const json = JSON.parse(
    JSON.stringify(r, function (this: Record<string, unknown>, k: string, v: unknown) {
      const raw = this[k];
      if (raw instanceof Uint8Array) return Buffer.from(raw).toString('base64');
      if (raw instanceof Date) return Math.floor(raw.getTime() / 1000);
      return v;
    }),
  ) as DynamoDBRecord;
  return { ...json, eventSourceARN: arn };
}
