import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { checkStreamRetryWindow, invalidateStreamRecords, type ItemCache } from '../lib/index.ts';
import { functionCache } from './shared-cache.ts';

export type StreamHandler = (event: DynamoDBStreamEvent) => Promise<DynamoDBBatchResponse>;

/**
 * The Streams consumer (one subscription per table; any view type, every view carries Keys):
 * invalidates each record's entry, unless the record's new image (NEW_IMAGE, infra/tables.yml) says
 * the item is what the entry already holds (lib/stream/recorded.ts). A record whose node cannot be reached is parked in
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
 */
export function createStreamHandler(cache: ItemCache): StreamHandler {
  // Refuses to start (ConfigError) when the mappings' retry window does not cover every TTL.
  checkStreamRetryWindow(cache);
  return async (event) => invalidateStreamRecords(cache, event?.Records ?? [], { parkingTable: cache.config.stream.parkingTable });
}

/**
 * The shared instance is taken on the first invocation rather than at import, so that tests can
 * import createStreamHandler without an environment; functionCache() keeps it for warm ones.
 */
export const handler: StreamHandler = async (event) => createStreamHandler(await functionCache())(event);
