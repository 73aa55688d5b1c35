import { entryTtlSeconds, fenceTimeMs, type Config } from '../config.ts';
import { ConfigError } from '../errors.ts';
import type { TableDefinition } from '../tables.ts';

/** DynamoDB Streams keep a record 24 hours: no retry window reaches further back. */
export const STREAM_RETENTION_SECONDS = 86_400;

/**
 * How long after a write an entry holding the item from before it may still be stored: a fill that
 * read before the write keeps its lease (leaseMs), and a writer's fence holds fills off for the
 * store's worst-case write (fenceTimeMs, the same the writers use).
 */
export function fillMarginSeconds(config: Config): number {
  return Math.ceil((config.cache.leaseMs + fenceTimeMs(config)) / 1000);
}

/**
 * How long a stream record for an item of `tables` can still matter (the largest entry TTL plus
 * the fill margin: past it every entry the record could invalidate has expired), checked against
 * what covers it. Throws ConfigError naming the setting to change when the window the mappings
 * were given (STREAM_RETRY_WINDOW_SECONDS, set by the deploy from infra/stream-mappings.cjs) is
 * shorter, or when it would exceed the stream's 24 hours: then no mapping can retry a record that
 * long, and an entry could outlive the last chance to invalidate it.
 */
export function checkRetryWindow(config: Config, tables: readonly TableDefinition[]): number {
  const margin = fillMarginSeconds(config);
  const cached = tables.filter((t) => t.cached);
  const longest = cached.reduce<TableDefinition | undefined>(
    (a, t) => (a === undefined || entryTtlSeconds(config, t) > entryTtlSeconds(config, a) ? t : a),
    undefined,
  );
  if (longest === undefined) return config.stream.retryWindowSeconds ?? 0;
  const ttl = entryTtlSeconds(config, longest);
  const needed = ttl + margin;
  const source = longest.ttlSeconds === undefined ? 'CACHE_TTL_SECONDS' : `tables.${longest.name}.ttlSeconds`;
  if (needed > STREAM_RETENTION_SECONDS) {
    throw new ConfigError(
      source,
      `an entry TTL of ${ttl} s needs stream records retried for ${needed} s (TTL + ${margin} s of lease and fence), ` +
        `longer than DynamoDB Streams keep them (${STREAM_RETENTION_SECONDS} s); keep it at or below ${STREAM_RETENTION_SECONDS - margin} s`,
    );
  }
  const given = config.stream.retryWindowSeconds;
  if (given !== undefined && given < needed) {
    throw new ConfigError(
      'STREAM_RETRY_WINDOW_SECONDS',
      `${given} s does not cover table '${longest.name}' (entry TTL ${ttl} s from ${source}, + ${margin} s of lease and fence = ${needed} s): ` +
        'raise the deploy’s cacheTtlSeconds or largestTableTtlSeconds param (serverless.yml)',
    );
  }
  return given ?? needed;
}

/** checkRetryWindow for the tables and settings of a stream function's instance (at its start). */
export function checkStreamRetryWindow(cache: { config: Config; tables: { all(): TableDefinition[] } }): number {
  return checkRetryWindow(cache.config, cache.tables.all());
}
