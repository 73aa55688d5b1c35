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

export type StreamHandler = (event: DynamoDBStreamEvent) => Promise<DynamoDBBatchResponse | void>;

export interface StreamFeedOptions {
  client: DynamoDBClientConfig;
  /** Physical names of the tables whose streams to feed to `handler`. */
  tables: string[];
  handler: StreamHandler;
  /** More subscriptions, each with its own function (the parking table's replayer). */
  subscriptions?: { table: string; handler: StreamHandler }[];
  /** How often an idle shard is polled (Lambda polls a DynamoDB stream about 4 times a second). */
  pollMs?: number;
  batchSize?: number;
  log?: (message: string) => void;
}

export interface StreamFeedStats {
  batches: number;
  records: number;
  retries: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const seqLess = (a: string, b: string): boolean => compareSequence(a, b) < 0;

/**
 * Reads DynamoDB Local's Streams API and invokes the stream handler the way Lambda's event source
 * mapping does: batches per shard in order, parents before children, and with
 * ReportBatchItemFailures the batch is retried from the lowest failed sequence number (a thrown
 * error retries the whole batch) until it succeeds, with back-off.
 */
export class StreamFeed {
  readonly stats: StreamFeedStats = { batches: 0, records: 0, retries: 0 };
  private readonly streams: DynamoDBStreamsClient;
  private readonly dynamo: DynamoDBClient;
  private running = false;
  private readonly loops: Promise<void>[] = [];
  private readonly started = new Set<string>();
  private readonly finished = new Set<string>();
  private paused = false;

  constructor(private readonly options: StreamFeedOptions) {
    this.streams = new DynamoDBStreamsClient(options.client);
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
    await Promise.allSettled(this.loops);
    this.streams.destroy();
    this.dynamo.destroy();
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
    while (this.running) {
      try {
        for (const shard of await this.listShards(arn)) {
          const id = shard.ShardId;
          if (!id || this.started.has(id)) continue;
          const parent = shard.ParentShardId;
          if (parent && this.started.has(parent) && !this.finished.has(parent)) continue;
          this.started.add(id);
          this.loops.push(this.feedShard(arn, id, handler));
        }
      } catch (err) {
        this.options.log?.(`stream feed: listing shards of ${arn} failed: ${String(err)}`);
      }
      await sleep(1000);
    }
  }

  private async iterator(arn: string, shardId: string, after: string | undefined): Promise<string | undefined> {
    const out = await this.streams.send(
      new GetShardIteratorCommand({
        StreamArn: arn,
        ShardId: shardId,
        ...(after ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: after } : { ShardIteratorType: 'TRIM_HORIZON' }),
      }),
    );
    return out.ShardIterator;
  }

  private async feedShard(arn: string, shardId: string, handler: StreamHandler): Promise<void> {
    const { pollMs = 250, batchSize = 100 } = this.options;
    let delivered: string | undefined; // the last sequence number applied
    let iterator: string | undefined = await this.iterator(arn, shardId, undefined);
    let pending: StreamRecord[] = [];
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
          // iterator expires: take a new one after the last record applied.
          const name = (err as { name?: string }).name;
          if (name === 'TrimmedDataAccessException' || name === 'ExpiredIteratorException') {
            iterator = await this.iterator(arn, shardId, delivered).catch(() => iterator);
          } else {
            this.options.log?.(`stream feed: GetRecords on ${shardId} failed: ${String(err)}`);
          }
          await sleep(pollMs);
          continue;
        }
        if (pending.length === 0) {
          await sleep(pollMs);
          continue;
        }
      }
      const failedFrom = await this.deliver(arn, pending, handler);
      if (failedFrom === undefined) {
        this.stats.batches++;
        this.stats.records += pending.length;
        delivered = pending[pending.length - 1]?.dynamodb?.SequenceNumber ?? delivered;
        pending = [];
        backoff = 100;
      } else {
        this.stats.retries++;
        pending = pending.filter((r) => !seqLess(r.dynamodb?.SequenceNumber ?? '0', failedFrom));
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 2000);
      }
    }
    this.finished.add(shardId);
  }

  /** Invokes the handler; returns the sequence number to retry from, or undefined when all applied. */
  private async deliver(arn: string, records: StreamRecord[], handler: StreamHandler): Promise<string | undefined> {
    const first = records[0]?.dynamodb?.SequenceNumber ?? '0';
    try {
      const res = await handler({ Records: records.map((r) => toLambdaRecord(arn, r)) });
      const failed = (res?.batchItemFailures ?? []).map((f) => f.itemIdentifier).filter((s): s is string => !!s);
      if (failed.length === 0) return undefined;
      return failed.reduce((lo, s) => (seqLess(s, lo) ? s : lo));
    } catch (err) {
      this.options.log?.(`stream feed: handler threw, retrying the batch: ${String(err)}`);
      return first;
    }
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
