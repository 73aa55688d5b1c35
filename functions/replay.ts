import type { Context, DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { checkStreamRetryWindow, ConfigError, replayParkedInvalidations, type ItemCache } from '../lib/index.ts';
import { functionCache } from './shared-cache.ts';

import { withMetrics } from './metrics.ts';

export type ReplayHandler = (event: DynamoDBStreamEvent, context?: Pick<Context, 'functionName'>) => Promise<DynamoDBBatchResponse>;

/**
 * The replayer, subscribed to the parking table's stream (NEW_IMAGE): the first attempt at each
 * invalidation the Streams consumer parked. Every record is answered as done, applied or not: one
 * whose node is still unreachable stays in the table for the sweep (functions/sweep.ts), so that
 * no parked record waits behind another (lib/stream/replayer.ts).
 */
export function createReplayHandler(cache: ItemCache): ReplayHandler {
  const table = cache.config.stream.parkingTable;
  if (table === undefined) throw new ConfigError('STREAM_PARKING_TABLE', 'required by the replayer: the table whose stream it reads');
  checkStreamRetryWindow(cache);
  return withMetrics(cache, async (event: DynamoDBStreamEvent) => replayParkedInvalidations(cache, table, event?.Records ?? []));
}

let replay: ReplayHandler | undefined;

/** Built on the first invocation (see functions/stream.ts), kept for warm ones. */
export const handler: ReplayHandler = async (event, context) => {
  replay ??= createReplayHandler(await functionCache());
  return replay(event, context);
};
