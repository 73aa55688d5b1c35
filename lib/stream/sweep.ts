import { decodeAttributes, type Attributes } from '../codec.ts';
import { errorMessage } from '../errors.ts';
import type { ItemCache } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';
import { logger, loggedKey } from '../log.ts';
import { FailuresByNode } from './node-failures.ts';
import { readParked, sweepDelayMs, type ParkedRead } from './parking.ts';

export interface SweepOptions {
  /** The sweep's clock (epoch ms): what is due, and when a deferred item is due next. */
  now?: number;
  /** Epoch ms past which no new page is read (the function's timeout, less a margin). */
  deadline?: number;
  /** Parked items worked on at once. */
  concurrency?: number;
}

export interface SweepResult {
  /** Invalidations applied and deleted. */
  applied: number;
  /** Still unappliable: their next attempt pushed back. */
  deferred: number;
  /** Not due yet and their node still away: left as they are, no write. */
  waiting: number;
  /** Past `expiresAt`: deleted without an attempt, nothing can still need them. */
  expired: number;
  /** Items that can never apply (an undeclared table, a key that does not fit): deleted if they have an id and parkedAt. */
  skipped: number;
  /** Items the parking table's own calls failed on (DynamoDB): left as they were, for the next run. */
  failed: number;
  /** False when the deadline stopped the scan before the table's end. */
  complete: boolean;
}

/**
 * The scheduled sweep of the parking table (parking.ts). Every item is looked at: one past its
 * `expiresAt` is deleted; one that is due (`nextAttemptAt` passed) is retried, and deleted once
 * applied, or has its next attempt pushed back (`attempts` + 1, `nextAttemptAt` by sweepDelayMs)
 * when its node still cannot be reached, conditionally, so a re-parking or a concurrent sweep is
 * never overwritten; one that is not due is retried only if its node answers (a probe, at most one
 * a second per node), so the back-off spares writes while a node is away but delays nothing once it
 * is back. An attempt follows the consumer's rule (parking.ts `recorded`). Each item waits only on its own node: an outage of one holds back nothing for others.
 */
export async function sweepParkedInvalidations(cache: ItemCache, parkingTable: string, options: SweepOptions = {}): Promise<SweepResult> {
  const now = options.now ?? Date.now();
  const result: SweepResult = { applied: 0, deferred: 0, waiting: 0, expired: 0, skipped: 0, failed: 0, complete: true };
  let failure: string | undefined;
  const deferred = new FailuresByNode();
  let cursor: Attributes | undefined;
  do {
    if (options.deadline !== undefined && Date.now() > options.deadline) {
      result.complete = false;
      break;
    }
    const page = await cache.store.scanParked(parkingTable, cursor);
    cursor = page.next;
    const todo = [...page.items];
    const worker = async (): Promise<void> => {
      for (let item = todo.shift(); item !== undefined; item = todo.shift()) {
        // One item's DynamoDB failure must not end the run for the others.
        await sweepOne(cache, parkingTable, item, now, result, deferred).catch((err: unknown) => {
          result.failed++;
          failure = errorMessage(err);
        });
      }
    };
    await Promise.all(Array.from({ length: options.concurrency ?? 16 }, worker));
  } while (cursor !== undefined);
  // One line per node per run, not one per item.
  deferred.log('PARKED_INVALIDATIONS_DEFERRED');
  if (result.failed > 0) logger.warn('PARKED_INVALIDATIONS_NOT_SWEPT', { count: result.failed, reason: failure });
  return result;
}

async function sweepOne(
  cache: ItemCache,
  parkingTable: string,
  item: Attributes,
  now: number,
  result: SweepResult,
  deferred: FailuresByNode,
): Promise<void> {
  let read: ParkedRead | undefined;
  let rk: ResolvedKey;
  try {
    read = readParked(item);
    rk = cache.keyFromStream(read.table, decodeAttributes(read.keys));
  } catch (err) {
    // Never applicable (a table no longer declared, a key that does not fit it): deleted when it
    // can be named, so that it is not met again every run until its TTL.
    result.skipped++;
    logger.warn('PARKED_INVALIDATION_SKIPPED', { parked: item.id?.S, reason: errorMessage(err) });
    if (read !== undefined) await cache.store.unpark(parkingTable, read.id, read.parkedAt);
    return;
  }
  const parked = read;
  if (parked.expiresAt !== undefined && parked.expiresAt * 1000 <= now) {
    // DynamoDB's TTL deletes within days, not at once: an expired item must not cost attempts.
    await cache.store.unpark(parkingTable, parked.id, parked.parkedAt);
    result.expired++;
    return;
  }
  const due = parked.nextAttemptAt === undefined || parked.nextAttemptAt <= now;
  if (!due) {
    const node = cache.nodeFor(rk);
    if (node !== undefined && !node.writable) await node.probeNow();
    if (node !== undefined && !node.writable) {
      result.waiting++;
      return;
    }
  }
  try {
    await cache.invalidate(rk, parked.recorded);
  } catch (err) {
    if (!due) {
      // Not due: its back-off stands; a failure here writes nothing.
      result.waiting++;
      return;
    }
    const attempts = parked.attempts + 1;
    const reason = errorMessage(err);
    await cache.store.deferParked(parkingTable, parked.id, parked, {
      attempts,
      nextAttemptAt: now + sweepDelayMs(attempts),
      reason: reason.slice(0, 1000),
    });
    result.deferred++;
    deferred.add(cache.nodeFor(rk)?.address ?? '', loggedKey(rk.redisKey, cache.config.cache.logKeys), reason);
    return;
  }
  await cache.store.unpark(parkingTable, parked.id, parked.parkedAt);
  result.applied++;
}
