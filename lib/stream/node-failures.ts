import { logger } from '../log.ts';

/** Keys listed in one log line at most; the parking table holds every parked key (parking.ts). */
export const MAX_LOGGED_KEYS = 500;

/**
 * The invalidations one invocation could not apply, gathered by node so that an outage costs one
 * log line per node per invocation (with the count and the keys) instead of one per record and
 * per retry. Keys are given as the logs show them (loggedKey: hashed under CACHE_LOG_KEYS=hash).
 */
export class FailuresByNode {
  private readonly byNode = new Map<string, { count: number; keys: Set<string>; reason: string }>();

  add(node: string, itemKey: string, reason: string): void {
    const entry = this.byNode.get(node) ?? { count: 0, keys: new Set<string>(), reason };
    entry.count++;
    if (entry.keys.size < MAX_LOGGED_KEYS) entry.keys.add(itemKey);
    entry.reason = reason;
    this.byNode.set(node, entry);
  }

  /** One warning per node under `message`: `cacheNode`, `count`, `keys` (distinct), the last `reason`. */
  log(message: string, extra: Record<string, unknown> = {}): void {
    for (const [cacheNode, { count, keys, reason }] of this.byNode) {
      const listed = [...keys];
      logger.warn(message, {
        cacheNode,
        count,
        keys: listed,
        ...(keys.size >= MAX_LOGGED_KEYS ? { keysTruncated: true } : {}),
        reason,
        ...extra,
      });
    }
    this.byNode.clear();
  }
}
