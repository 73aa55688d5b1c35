import { createHash } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';

/**
 * One structured logger for the library (level from POWERTOOLS_LOG_LEVEL, read by Powertools).
 * Item values are never logged; keys and node addresses (without credentials) are.
 */
export const logger = new Logger({ serviceName: 'dynamo-redis-cache' });

/** An item key as logs show it: as it is, or (CACHE_LOG_KEYS=hash) a SHA-256 prefix that still joins log lines. */
export function loggedKey(key: string, mode: 'plain' | 'hash'): string {
  return mode === 'plain' ? key : `sha256:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}
