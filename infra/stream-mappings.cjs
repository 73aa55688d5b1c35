// The event source mappings' settings, declared once. serverless.yml takes them with
// ${file(infra/stream-mappings.cjs)} (osls calls the exported function at package time), and
// infra/local/stream-feed.ts imports the same module, so the local feed delivers records as the
// deploy's mappings do. CommonJS: osls loads a file variable with require().
'use strict';

/** DynamoDB Streams keep a record 24 hours: no retry window can reach further back. */
const STREAM_RETENTION_SECONDS = 86400;

/**
 * How long after a write an entry holding the item from before it may still be stored: a fill
 * that read before the write keeps its lease (CACHE_LEASE_MS) and a writer's fence holds fills off
 * for the store's worst-case write (lib/item-cache.ts). 300 s covers both for every DynamoDB
 * timeout and lease setting up to 60 s a call; the stream functions check at start-up that the
 * window covers their own settings (lib/stream/window.ts) and refuse to start when it does not.
 */
const FILL_MARGIN_SECONDS = 300;

/**
 * How long a stream record can still matter: an entry expires its TTL after it was stored (reads
 * do not extend it), and one holding data from before a write was stored at most the fill margin
 * after that write. Past the largest TTL plus the margin every entry a record could invalidate has
 * expired. Throws when that is longer than the stream keeps records: no window can cover it.
 */
function retryWindowSeconds(largestTtlSeconds) {
  if (!Number.isInteger(largestTtlSeconds) || largestTtlSeconds < 1) {
    throw new Error(`the largest entry TTL must be a whole number of seconds >= 1, got ${largestTtlSeconds}`);
  }
  const window = largestTtlSeconds + FILL_MARGIN_SECONDS;
  if (window > STREAM_RETENTION_SECONDS) {
    throw new Error(
      `an entry TTL of ${largestTtlSeconds} s needs stream records retried for ${window} s (TTL + ${FILL_MARGIN_SECONDS} s), ` +
        `longer than DynamoDB Streams keep them (${STREAM_RETENTION_SECONDS} s): keep every TTL at or below ` +
        `${STREAM_RETENTION_SECONDS - FILL_MARGIN_SECONDS} s (cacheTtlSeconds, largestTableTtlSeconds)`,
    );
  }
  return window;
}

/**
 * The settings of every mapping (each table's stream to the consumer, the parking table's to the
 * replayer), in serverless.yml's spelling:
 * - TRIM_HORIZON: a mapping created late (a new stage, a stream replaced, a mapping re-created)
 *   reads what the stream already holds; invalidations are idempotent, so re-reading costs work only.
 * - batchSize 100: with new images in the stream (infra/tables.yml) a record carries the whole item,
 *   up to 400 KB; Lambda keeps a batch within its 6 MB invocation payload on its own (fewer records).
 *   A change of a table's view type gives it a new stream (new ARN): the mapping of that ARN starts at
 *   its TRIM_HORIZON, and the gap before it calls for a flush (README, "Stream view types").
 * - ReportBatchItemFailures: Lambda retries from the lowest failed record; bisect splits a batch
 *   whose invocation failed as a whole.
 * - No retry count (-1): retries stop at the record's age, the retry window, past which the record
 *   can no longer matter.
 */
function mappingSettings(largestTtlSeconds) {
  return {
    startingPosition: 'TRIM_HORIZON',
    batchSize: 100,
    functionResponseType: 'ReportBatchItemFailures',
    bisectBatchOnFunctionError: true,
    maximumRetryAttempts: -1,
    maximumRecordAgeInSeconds: retryWindowSeconds(largestTtlSeconds),
  };
}

/** What serverless.yml reads: the largest TTL is the larger of the two params. */
async function resolve({ resolveVariable }) {
  const ttl = Number(await resolveVariable('param:cacheTtlSeconds'));
  const tables = Number(await resolveVariable('param:largestTableTtlSeconds'));
  return mappingSettings(Math.max(ttl, tables));
}

module.exports = resolve;
module.exports.mappingSettings = mappingSettings;
module.exports.retryWindowSeconds = retryWindowSeconds;
module.exports.STREAM_RETENTION_SECONDS = STREAM_RETENTION_SECONDS;
module.exports.FILL_MARGIN_SECONDS = FILL_MARGIN_SECONDS;
