import type { Context } from 'aws-lambda';
import {
  checkStreamRetryWindow,
  ConfigError,
  invalidateTableEntries,
  sweepParkedInvalidations,
  ValidationError,
  type ItemCache,
  type SweepResult,
} from '../lib/index.ts';
import { functionCache } from './shared-cache.ts';
import { withMetrics } from './metrics.ts';

/**
 * A scheduled event (anything without `invalidateTables`) sweeps; `{ "invalidateTables": [...] }`,
 * sent by an operator (README, Deploy), invalidates every cached entry of those tables instead.
 */
export type SweepHandler = (
  event?: unknown,
  context?: Partial<Pick<Context, 'getRemainingTimeInMillis' | 'functionName'>>,
) => Promise<SweepResult | { entries: number }>;

/** Left of the function's timeout when the sweep stops reading new pages: the page in hand finishes. */
const STOP_MARGIN_MS = 10_000;

/**
 * The sweep of the parking table, on a schedule (serverless.yml): retries each parked invalidation
 * that is due, with per-item back-off, and deletes what it applied (lib/stream/sweep.ts). What the
 * timeout cuts short, the next run picks up. Invoked with `invalidateTables`, it invalidates those
 * tables' entries on every node instead (after a stream replacement; lib/stream/flush.ts): it is
 * the function that already runs inside the VPC, next to the nodes.
 *
 * A scheduled run also asks every node (PING, as GET /health does) before publishing its metrics:
 * it runs every minute whatever the traffic, so NodesNotUp has a datapoint each minute even when
 * no request or record touches a node; and ParkedBacklog is what its scan left in the table.
 */
export function createSweepHandler(cache: ItemCache): SweepHandler {
  const table = cache.config.stream.parkingTable;
  if (table === undefined) throw new ConfigError('STREAM_PARKING_TABLE', 'required by the sweep: the table it reads');
  checkStreamRetryWindow(cache);
  return withMetrics(cache, async (event: unknown, context?: Parameters<SweepHandler>[1]) => {
    const flush = (event as { invalidateTables?: unknown } | undefined)?.invalidateTables;
    if (flush !== undefined) {
      if (!Array.isArray(flush) || flush.length === 0 || !flush.every((t) => typeof t === 'string')) {
        throw new ValidationError('invalidateTables', 'expected a non-empty list of table names');
      }
      return invalidateTableEntries(cache, flush);
    }
    const remaining = context?.getRemainingTimeInMillis?.();
    const result = await sweepParkedInvalidations(
      cache,
      table,
      remaining === undefined ? {} : { deadline: Date.now() + remaining - STOP_MARGIN_MS },
    );
    cache.metrics.count('SweepApplied', result.applied);
    cache.metrics.count('SweepDeferred', result.deferred);
    cache.metrics.count('SweepFailed', result.failed);
    // What is left: deferred, waiting and failed items (a lower bound when the deadline cut the scan short).
    cache.metrics.level('ParkedBacklog', result.deferred + result.waiting + result.failed);
    await cache.checkHealth();
    return result;
  });
}

let sweep: SweepHandler | undefined;

/** Built on the first invocation (see functions/stream.ts), kept for warm ones. */
export const handler: SweepHandler = async (event, context) => {
  sweep ??= createSweepHandler(await functionCache());
  return sweep(event, context);
};
