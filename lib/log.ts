import { createHmac } from 'node:crypto';
import { Logger } from '@aws-lambda-powertools/logger';

/**
 * One structured logger for the library (level from POWERTOOLS_LOG_LEVEL, read by Powertools).
 * Item values are never logged; keys and node addresses (without credentials) are.
 */
export const logger = new Logger({ serviceName: 'dynamo-redis-cache' });

/**
 * CACHE_LOG_KEYS=hash: an item key appears in logs as a 64-bit prefix of its HMAC-SHA-256 under a
 * secret key (CACHE_LOG_KEYS_SECRET). The same key still joins log lines; without the secret, a
 * dictionary of likely keys (e-mail addresses, ids) no longer reverses it, as it would an unkeyed
 * hash. The secret is a private field: neither JSON nor util.inspect shows it.
 */
export class LogKeyHasher {
  readonly #secret: Buffer;

  constructor(secret: string) {
    this.#secret = Buffer.from(secret, 'utf8');
  }

  hash(itemKey: string): string {
    return `hmac:${createHmac('sha256', this.#secret).update(itemKey, 'utf8').digest('hex').slice(0, 16)}`;
  }

  toJSON(): string {
    return 'hash';
  }
}

/** How item keys appear in logs: as they are, or keyed-hashed. */
export type LogKeys = 'plain' | LogKeyHasher;

/** An item key as logs show it (see LogKeys). */
export function loggedKey(key: string, mode: LogKeys): string {
  return mode === 'plain' ? key : mode.hash(key);
}

/**
 * `redis://host:port/db` without user or password: safe for logs, errors and /health. Text that is
 * not a URL (a malformed setting) keeps no user information either: everything before its last `@`
 * (after the scheme) is dropped, since it cannot be parsed to tell the user from the password.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    const at = url.lastIndexOf('@');
    if (at === -1) return url;
    const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? '';
    return `${scheme}…@${url.slice(at + 1)}`;
  }
  const db = u.pathname && u.pathname !== '/' ? u.pathname : '';
  return `${u.protocol}//${u.hostname}:${u.port || '6379'}${db}`;
}
