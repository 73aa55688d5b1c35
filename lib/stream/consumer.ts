import { decodeAttributes, encodeAttributes, type Attributes } from '../codec.ts';
import { errorMessage } from '../errors.ts';
import type { ItemCache } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';
import type { RecordedState } from '../cache/protocol.ts';
import { logger, loggedKey } from '../log.ts';
import { eachRecord, type StreamBatchResult } from './batch.ts';
import { FailuresByNode } from './node-failures.ts';
import { parkInvalidation } from './parking.ts';
import { recordedState } from './recorded.ts';

/**
 * The part of a DynamoDB Streams record the consumer needs, in Lambda's event shape (binary as
 * base64) or the SDK's (binary as bytes). Every view type carries Keys, KEYS_ONLY included; NEW_IMAGE
 * and NEW_AND_OLD_IMAGES also the item's new image, which lets a record of a change the cache already
 * holds leave its entry alone (recorded.ts).
 */
export interface StreamRecordLike {
  eventID?: string;
  eventName?: string;
  eventSourceARN?: string;
  dynamodb?: {
    Keys?: Record<string, unknown>;
    NewImage?: Record<string, unknown>;
    StreamViewType?: string;
    SequenceNumber?: string;
  };
}

/** `arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>` → `<name>`. */
export function tableNameFromArn(arn: string | undefined): string | undefined {
  return arn === undefined ? undefined : /:table\/([^/]+)/.exec(arn)?.[1];
}

export interface StreamConsumerOptions {
  /**
   * Physical name of the parking table (parking.ts). With it, a record whose node
   * cannot be reached is parked there and the shard moves on; without it, or when parking fails,
   * the record is reported failed and the shard waits on it.
   */
  parkingTable?: string | undefined;
  /**
   * Called for each record whose invalidation was applied, with when it was sent and what the record
   * said the item now is (undefined for a KEYS_ONLY record): the consistency inspector samples these.
   */
  onApplied?: (rk: ResolvedKey, sentAt: number, recorded: RecordedState | undefined) => void;
}

/**
 * Invalidates the entry of every record's item (G2, R5), unless the record says the item now is what
 * the entry already holds (the same version and content digest from its new image, or deleted and
 * held as not-found: recorded.ts, INVALIDATE in scripts.ts), so the library's own writes keep what
 * they stored. An invalidation is idempotent, and a kept entry equals a state the item had at the
 * record's change, so repeated and out-of-order records are harmless. A record whose node cannot be reached keeps its key dirty
 * in this container and is parked (see StreamConsumerOptions) or reported as a failure, so that it
 * is retried until applied (R6). A record that can never apply (not one of our tables, a malformed
 * key) is logged and skipped: retrying it would only block the shard.
 */
export async function invalidateStreamRecords(
  cache: ItemCache,
  records: readonly StreamRecordLike[],
  options: StreamConsumerOptions = {},
): Promise<StreamBatchResult> {
  const parked = new FailuresByNode();
  const failed = new FailuresByNode();
  const result = await eachRecord(records, async (record, id) => {
    let physical: string;
    let keys: Attributes;
    let rk: ResolvedKey;
    try {
      ({ physical, keys } = recordKey(record));
      rk = cache.keyFromStream(physical, keys);
    } catch (err) {
      logger.warn('STREAM_RECORD_SKIPPED', { record: id, reason: errorMessage(err) });
      cache.metrics.count('StreamRecordsSkipped');
      return true;
    }
    const recorded = recordedState(rk.table, record);
    try {
      const sentAt = Date.now();
      const outcome = await cache.invalidate(rk, recorded);
      cache.metrics.count(outcome === 'kept' ? 'StreamRecordsKept' : 'StreamInvalidations');
      options.onApplied?.(rk, sentAt, recorded);
      return true;
    } catch (err) {
      const itemKey = loggedKey(rk.redisKey, cache.config.cache.logKeys);
      const node = cache.nodeFor(rk)?.address ?? '';
      let reason = errorMessage(err);
      if (options.parkingTable !== undefined) {
        try {
          await parkInvalidation(cache, options.parkingTable, {
            eventID: record.eventID,
            rk,
            physicalTable: physical,
            keys,
            recorded,
            node,
            reason,
          });
          parked.add(node, itemKey, reason);
          cache.metrics.count('StreamRecordsParked');
          return true;
        } catch (parkErr) {
          reason = `${reason}; not parked: ${errorMessage(parkErr)}`;
        }
      }
      failed.add(node, itemKey, reason);
      cache.metrics.count('StreamRecordsFailed');
      return false;
    }
  });
  // One line per node per invocation, not one per record (an outage would flood the logs).
  parked.log('STREAM_RECORDS_PARKED');
  failed.log('STREAM_RECORDS_FAILED');
  return result;
}

/** A record's table (physical name) and key attributes, binary as bytes. */
function recordKey(record: StreamRecordLike): { physical: string; keys: Attributes } {
  const physical = tableNameFromArn(record.eventSourceARN);
  if (physical === undefined) throw new Error('record has no table ARN');
  const keys = record.dynamodb?.Keys;
  if (keys === undefined) throw new Error('record has no Keys');
  // Round trip through the codec: base64 strings and byte arrays both come out as bytes.
  return { physical, keys: decodeAttributes(encodeAttributes(keys as Attributes)) };
}
