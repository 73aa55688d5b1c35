import { logger, loggedKey, type LogKeys } from '../log.ts';

/**
 * Keys whose invalidation could not reach their node (POSTMODEL_DIRTYDATA in ARCHITECTURE.md's lineage). Each is
 * logged as a structured error and kept here, in module scope, until the node's recovery probe has
 * invalidated it: a node is not trusted again before its dirty keys are repaired (R6, R9). If more
 * keys go dirty than `max`, the node is flushed on recovery instead: a full repair.
 */
export class DirtyKeys {
  /** key → the count of its latest failure, so a repair clears only failures it saw. */
  private readonly keys = new Map<string, number>();
  private failures = 0;
  private overflowed = false;

  constructor(
    private readonly node: string,
    private readonly max: number,
    private readonly logKeys: LogKeys = 'plain',
  ) {}

  /** Where keys go once the node is retired from the topology (cluster.ts `apply`): to their owners now. */
  private forward: ((itemKey: string | undefined, reason: string) => void) | undefined;

  /**
   * From now on every key added (undefined for a flush) goes to `sink` instead: the node was retired,
   * and what an operation still in flight owes it is owed where the key lives now.
   */
  forwardTo(sink: (itemKey: string | undefined, reason: string) => void): void {
    this.forward = sink;
  }

  add(itemKey: string, reason: string): void {
    if (this.forward !== undefined) return this.forward(itemKey, reason);
    logger.error('CACHE_DIRTY_DATA', { cacheNode: this.node, itemKey: loggedKey(itemKey, this.logKeys), reason });
    this.failures++;
    if (this.keys.has(itemKey) || this.keys.size < this.max) this.keys.set(itemKey, this.failures);
    else this.overflowed = true;
  }

  /** A full repair owed: the node is emptied on recovery (a retired node's overflowed set handed over, cluster.ts). */
  addFlush(reason: string): void {
    if (this.forward !== undefined) return this.forward(undefined, reason);
    logger.error('CACHE_DIRTY_DATA', { cacheNode: this.node, itemKey: '', reason });
    this.failures++;
    this.overflowed = true;
  }

  get size(): number {
    return this.keys.size;
  }

  get needsFlush(): boolean {
    return this.overflowed;
  }

  has(itemKey: string): boolean {
    return this.keys.has(itemKey);
  }

  /** What the recovery path must repair; pass it to `clear` only after the repair succeeded. */
  snapshot(): { keys: string[]; upTo: number; flush: boolean } {
    return { keys: [...this.keys.keys()], upTo: this.failures, flush: this.overflowed };
  }

  /** Forgets what a repair covered; a key that failed again after the snapshot stays dirty. */
  clear(repaired: { upTo: number; flush: boolean }): void {
    for (const [k, seq] of this.keys) if (seq <= repaired.upTo) this.keys.delete(k);
    if (repaired.flush && this.failures === repaired.upTo) this.overflowed = false;
  }
}
