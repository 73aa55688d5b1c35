import { Logger } from '@aws-lambda-powertools/logger';

/**
 * One structured logger for the library (level from POWERTOOLS_LOG_LEVEL, read by Powertools).
 * Item values are never logged; keys and node addresses (without credentials) are.
 */
export const logger = new Logger({ serviceName: 'dynamo-redis-cache' });
