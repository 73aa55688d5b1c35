import { decodeAttributes } from '../codec.ts';
import { errorMessage } from '../errors.ts';
import type { ItemCache } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';
import { logger, loggedKey } from '../log.ts';
import { eachRecord, type StreamBatchResult } from './batch.ts';
import { FailuresByNode } from './node-failures.ts';
import { readParked, type ParkedRead } from './parking.ts';

/** The part of a parking table stream record the replayer reads (Lambda's shape or the SDK's). */
export interface ParkingRecordLike {
  eventID?: string;
  eventName?: string;
  dynamodb?: { NewImage?: Record<string, unknown>; SequenceNumber?: string };
}

/**
 * The replayer: the first attempt at each parked invalidation, as soon as its record arrives, under
 * the consumer's rule (a parked record that says what the item now is leaves an entry holding exactly
 * that alone: parking.ts `recorded`). An
 * applied one is deleted (a failed delete only leaves an item for the sweep or the TTL to remove).
 * One whose node still cannot be reached is answered as done all the same and stays in the table:
 * the sweep (sweep.ts) retries it with back-off. Reporting it failed would make Lambda retry the
 * batch from it, holding back every parked record behind it, those for healthy nodes included, for
 * as long as its node is away. Records of the sweep's own updates (`attempts` above 0), REMOVE
 * records (deletes, TTL) and malformed ones carry nothing to do.
 */
export async function replayParkedInvalidations(
  cache: ItemCache,
  parkingTable: string,
  records: readonly ParkingRecordLike[],
): Promise<StreamBatchResult> {
  const waiting = new FailuresByNode();
  const result = await eachRecord(records, async (record, seq) => {
    const image = record.dynamodb?.NewImage;
    if (record.eventName === 'REMOVE' || image === undefined) return true;
    let parked: ParkedRead;
    let rk: ResolvedKey;
    try {
      parked = readParked(image);
      if (parked.attempts > 0) return true;
      rk = cache.keyFromStream(parked.table, decodeAttributes(parked.keys));
    } catch (err) {
      logger.warn('PARKED_INVALIDATION_SKIPPED', { record: seq, reason: errorMessage(err) });
      return true;
    }
    try {
      await cache.invalidate(rk, parked.recorded);
    } catch (err) {
      waiting.add(cache.nodeFor(rk)?.address ?? '', loggedKey(rk.redisKey, cache.config.cache.logKeys), errorMessage(err));
      cache.metrics.count('ParkedLeftForSweep');
      return true;
    }
    cache.metrics.count('ParkedReplayed');
    await cache.store.unpark(parkingTable, parked.id, parked.parkedAt).catch((err: unknown) => {
      logger.warn('PARKED_INVALIDATION_NOT_DELETED', { record: seq, reason: errorMessage(err) });
    });
    return true;
  });
  // One line per node per invocation: the keys left to the sweep.
  waiting.log('PARKED_INVALIDATIONS_WAITING');
  return result;
}
