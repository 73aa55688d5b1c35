import { decodeAttributes, encodeAttributes, fromAttributes } from './codec.ts';
import type { ItemCache } from './item-cache.ts';
import type { ResolvedKey } from './keys.ts';
import { logger, loggedKey } from './log.ts';
import { errorMessage } from './cache/node.ts';

/**
 * The part of a DynamoDB Streams record the consumer needs, in Lambda's event shape (binary as
 * base64) or the SDK's (binary as bytes). Every view type carries Keys, KEYS_ONLY included.
 */
export interface StreamRecordLike {
  eventID?: string;
  eventName?: string;
  eventSourceARN?: string;
  dynamodb?: {
    Keys?: Record<string, unknown>;
    SequenceNumber?: string;
  };
}

export interface StreamBatchResult {
  /** Lambda's ReportBatchItemFailures answer: the records to retry, by sequence number. */
  batchItemFailures: { itemIdentifier: string }[];
}

/** `arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>` → `<name>`. */
export function tableNameFromArn(arn: string | undefined): string | undefined {
  return arn === undefined ? undefined : /:table\/([^/]+)/.exec(arn)?.[1];
}

/**
 * Invalidates the entry of every record's item (G2, R5). An invalidation is idempotent, so repeated
 * and out-of-order records are harmless; a record whose node cannot be reached is reported as a
 * failure (and its key kept dirty), so Lambda retries it until it is applied. A record that can
 * never apply (not one of our tables, a malformed key) is logged and skipped: retrying it would
 * only block the shard.
 */
export async function invalidateStreamRecords(cache: ItemCache, records: readonly StreamRecordLike[]): Promise<StreamBatchResult> {
  const failures: { itemIdentifier: string }[] = [];
  await Promise.all(
    records.map(async (record, i) => {
      const id = record.dynamodb?.SequenceNumber ?? record.eventID ?? String(i);
      let rk: ResolvedKey;
      try {
        rk = recordKey(cache, record);
      } catch (err) {
        logger.warn('STREAM_RECORD_SKIPPED', { record: id, reason: errorMessage(err) });
        return;
      }
      try {
        await cache.invalidate(rk);
      } catch (err) {
        failures.push({ itemIdentifier: id });
        logger.warn('STREAM_RECORD_FAILED', { record: id, itemKey: loggedKey(rk.redisKey, cache.config.cache.logKeys), reason: errorMessage(err) });
      }
    }),
  );
  // Lambda retries from the lowest failed sequence number; report in stream order.
  failures.sort((a, b) => compareSequence(a.itemIdentifier, b.itemIdentifier));
  return { batchItemFailures: failures };
}

function recordKey(cache: ItemCache, record: StreamRecordLike): ResolvedKey {
  const physical = tableNameFromArn(record.eventSourceARN);
  if (physical === undefined) throw new Error('record has no table ARN');
  const table = cache.tables.fromPhysicalName(physical);
  if (table === undefined) throw new Error(`table '${physical}' is not declared`);
  const keys = record.dynamodb?.Keys;
  if (keys === undefined) throw new Error('record has no Keys');
  // Round trip through the codec: base64 strings and byte arrays both come out as bytes.
  const av = decodeAttributes(encodeAttributes(keys as Parameters<typeof encodeAttributes>[0]));
  return cache.resolve(table, fromAttributes(av), 'Keys');
}

function compareSequence(a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  return a < b ? -1 : a > b ? 1 : 0;
}
