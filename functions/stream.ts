import type { Context, DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { checkStreamRetryWindow, ConsistencyInspector, invalidateStreamRecords, streamAgeSeconds, type ItemCache } from '../lib/index.ts';
import { functionCache } from './shared-cache.ts';
import { withMetrics } from './metrics.ts';

export type StreamHandler = (event: DynamoDBStreamEvent, context?: Pick<Context, 'functionName'>) => Promise<DynamoDBBatchResponse>;

/**
 * The Streams consumer (one subscription per table; KEYS_ONLY is enough, every view carries Keys):
 * invalidates each record's entry. A record whose node cannot be reached is parked in
 * STREAM_PARKING_TABLE (functions/replay.ts applies it later) so the shard moves on; one that
 * cannot be parked either is answered by sequence number (ReportBatchItemFailures), so Lambda
 * retries from the first record that failed. Never throws: a batch in which every record failed
 * reports every record, so Lambda retries it from its first record, as it would after a thrown
 * error, while the answer still says which records failed.
 *
 * Not Powertools' BatchProcessor: invalidateStreamRecords already isolates each record's failure,
 * skips records that can never apply (another table, a malformed key) instead of blocking the
 * shard on them, and answers in Lambda's shape; the processor would add a per-record wrapper and
 * throw FullBatchFailureError on a fully failed batch unless told not to.
 *
 * After the batch, the consistency inspector checks the samples of earlier batches whose delay has
 * passed (lib/stream/inspector.ts); then the invocation's metrics are published (functions/metrics.ts).
 */
export function createStreamHandler(cache: ItemCache, inspector = new ConsistencyInspector(cache)): StreamHandler {
  // Refuses to start (ConfigError) when the mappings' retry window does not cover every TTL.
  checkStreamRetryWindow(cache);
  const options = { parkingTable: cache.config.stream.parkingTable, onApplied: inspector.applied };
  return withMetrics(cache, async (event: DynamoDBStreamEvent) => {
    const records = event?.Records ?? [];
    cache.metrics.count('StreamRecords', records.length);
    const age = streamAgeSeconds(records);
    if (age !== undefined) cache.metrics.level('StreamAge', age);
    const result = await invalidateStreamRecords(cache, records, options);
    await inspector.checkDue();
    return result;
  });
}

let stream: StreamHandler | undefined;

/**
 * Built on the first invocation rather than at import, so that tests can import createStreamHandler
 * without an environment; kept for warm ones (with the inspector's samples waiting in it).
 */
export const handler: StreamHandler = async (event, context) => {
  stream ??= createStreamHandler(await functionCache());
  return stream(event, context);
};
