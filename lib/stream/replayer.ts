import { decodeAttributes } from '../codec.ts';
import { errorMessage } from '../errors.ts';
import type { ItemCache } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';
import { logger, loggedKey } from '../log.ts';
import { eachRecord, type StreamBatchResult } from './batch.ts';
import type { ParkedInvalidation } from './parking.ts';

/** The part of a parking table stream record the replayer reads (Lambda's shape or the SDK's). */
export interface ParkingRecordLike {
  eventID?: string;
  eventName?: string;
  dynamodb?: { NewImage?: Record<string, unknown>; SequenceNumber?: string };
}

/**
 * The replayer: invalidates each parked key, and deletes the parked item once applied (a failed
 * delete only leaves an item for the TTL to remove). A key whose node still cannot be reached is
 * reported failed, so Lambda retries from it; only parked records wait there, never the
 * application tables' streams. REMOVE records (the replayer's own deletes, TTL) carry nothing to do.
 */
export async function replayParkedInvalidations(
  cache: ItemCache,
  parkingTable: string,
  records: readonly ParkingRecordLike[],
): Promise<StreamBatchResult> {
  return eachRecord(records, async (record, seq) => {
    const image = record.dynamodb?.NewImage;
    if (record.eventName === 'REMOVE' || image === undefined) return true;
    let parked: Pick<ParkedInvalidation, 'id' | 'table' | 'keys'>;
    let rk: ResolvedKey;
    try {
      parked = readParked(image);
      rk = cache.keyFromStream(parked.table, decodeAttributes(parked.keys));
    } catch (err) {
      logger.warn('PARKED_INVALIDATION_SKIPPED', { record: seq, reason: errorMessage(err) });
      return true;
    }
    try {
      await cache.invalidate(rk);
    } catch (err) {
      logger.warn('PARKED_INVALIDATION_FAILED', {
        record: seq,
        itemKey: loggedKey(rk.redisKey, cache.config.cache.logKeys),
        reason: errorMessage(err),
      });
      return false;
    }
    await cache.store.unpark(parkingTable, parked.id, imageNumber(image, 'parkedAt')).catch((err: unknown) => {
      logger.warn('PARKED_INVALIDATION_NOT_DELETED', { record: seq, reason: errorMessage(err) });
    });
    return true;
  });
}

/** A NewImage attribute's string; Lambda and the SDK both spell a string as `{ S: … }`. */
function imageString(image: Record<string, unknown>, name: string): string {
  const v = (image[name] as { S?: unknown } | undefined)?.S;
  if (typeof v !== 'string') throw new Error(`parked item has no string '${name}'`);
  return v;
}

function imageNumber(image: Record<string, unknown>, name: string): { N: string } {
  const v = (image[name] as { N?: unknown } | undefined)?.N;
  if (typeof v !== 'string') throw new Error(`parked item has no number '${name}'`);
  return { N: v };
}

function readParked(image: Record<string, unknown>): Pick<ParkedInvalidation, 'id' | 'table' | 'keys'> {
  imageNumber(image, 'parkedAt');
  return { id: imageString(image, 'id'), table: imageString(image, 'table'), keys: imageString(image, 'keys') };
}
