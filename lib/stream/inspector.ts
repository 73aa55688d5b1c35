import { isDeepStrictEqual } from 'node:util';
import { decodeEntry, encodeEntry } from '../codec.ts';
import { entryTtlSeconds, fenceTimeMs } from '../config.ts';
import { errorMessage } from '../errors.ts';
import type { ItemCache } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';
import { logger, loggedKey } from '../log.ts';
import { versionOf } from '../store.ts';
import { within } from '../cache/deadline.ts';
import { deadlineClock } from '../clock.ts';
import { ABSENT, type RecordedState } from '../cache/protocol.ts';

export interface InspectorOptions {
  /** Share of applied records checked (0 to 1); default CACHE_INSPECT_SAMPLE_RATE. */
  sampleRate?: number;
  /** How long after its invalidation a sample is checked; default the fence time plus the lease time. */
  delayMs?: number;
  /** Samples kept waiting at most; past it new samples are not taken (a container's memory is bounded). */
  maxPending?: number;
  /** The sampling draw (tests pass a fixed one). */
  random?: () => number;
}

/** What the inspector found wrong about one key: the log line's fields. */
export interface Inconsistency {
  /** As the logs show keys (CACHE_LOG_KEYS). */
  itemKey: string;
  cacheNode: string;
  /** The cached item's version, or `absent` for a cached not-found. */
  cachedVersion: number | 'absent';
  /** DynamoDB's version now (consistent read), or `absent`. */
  dynamoVersion: number | 'absent';
  /** How long ago the entry was stored (from its TTL left); undefined for an entry without a TTL (not written by the library). */
  entryAgeMs: number | undefined;
  /** How long ago the record's invalidation was sent. */
  sinceInvalidationMs: number;
}

interface Sample {
  rk: ResolvedKey;
  /** When the invalidation was sent (before it reached the node). */
  sentAt: number;
  /** What the record said the item now is (images in the stream), or undefined (KEYS_ONLY). */
  recorded: RecordedState | undefined;
  dueAt: number;
}

/** Samples kept waiting by default: a few batches' worth at a high rate. */
const MAX_PENDING = 1000;

/**
 * The live consistency inspector of the Streams consumer (README, "Operating it"). It samples the
 * records whose invalidation was applied and, once a delay has passed, reads the key's entry back:
 * an entry that was stored **before** the invalidation was sent (its age, from the TTL it has left,
 * says so) cannot have survived a working invalidation, since INVALIDATE deletes `d` and every
 * later store resets the TTL, unless the record's image is what the entry holds (INVALIDATE keeps
 * it then, issue 13), which the check tells apart. If such an entry also disagrees with DynamoDB (a consistent read), it
 * is an inconsistency: readers are served something older than the record: a metric
 * (`Inconsistencies`) and an error log line `CACHE_INCONSISTENCY` with the key (as CACHE_LOG_KEYS
 * says), the versions and the ages.
 *
 * Why after a delay, and why in a later invocation: the check is true whenever it runs, but run in
 * the record's own path it would make every sampled invalidation wait for a read. Samples wait in
 * the container (module scope, like node health) and are checked after a later batch was applied,
 * once the fence and lease time have passed (every write and fill that raced the invalidation has
 * ended, so the inspector sees the entry later readers see). A bounded wait inside the invocation
 * was rejected: it would bill the wait, and hold the shard's next batch, on every invocation. The
 * price: samples of a container that receives no further batch are never checked (a sample, not a
 * guarantee).
 *
 * Cost per sample: one Redis round trip (HMGET and PTTL, pipelined) and, only when an entry stored
 * before the invalidation is found, one strongly consistent GetItem.
 */
export class ConsistencyInspector {
  private readonly sampleRate: number;
  private readonly delayMs: number;
  private readonly maxPending: number;
  private readonly random: () => number;
  private pending: Sample[] = [];
  /** Samples checked since the inspector was made. */
  checked = 0;

  constructor(
    private readonly cache: ItemCache,
    options: InspectorOptions = {},
  ) {
    this.sampleRate = options.sampleRate ?? cache.config.observe.inspectSampleRate;
    this.delayMs = options.delayMs ?? fenceTimeMs(cache.config) + cache.config.cache.leaseMs;
    this.maxPending = options.maxPending ?? MAX_PENDING;
    this.random = options.random ?? Math.random;
  }

  /** Samples waiting for their check. */
  get waiting(): number {
    return this.pending.length;
  }

  /** For invalidateStreamRecords' `onApplied`: takes a sample of the applied records. */
  readonly applied = (rk: ResolvedKey, sentAt: number, recorded?: RecordedState): void => {
    if (this.sampleRate <= 0 || this.pending.length >= this.maxPending || this.random() >= this.sampleRate) return;
    this.pending.push({ rk, sentAt, recorded, dueAt: Date.now() + this.delayMs });
  };

  /** Checks every sample whose delay has passed; returns what was found wrong (also logged and counted). */
  async checkDue(now = Date.now()): Promise<Inconsistency[]> {
    const due = this.pending.filter((s) => s.dueAt <= now);
    if (due.length === 0) return [];
    this.pending = this.pending.filter((s) => s.dueAt > now);
    // Never throws: the inspector must not fail the batch it follows.
    const found = await Promise.all(
      due.map((s) =>
        this.check(s).catch((err: unknown) => {
          logger.warn('INSPECTOR_CHECK_FAILED', { reason: errorMessage(err) });
          return undefined;
        }),
      ),
    );
    return found.filter((f): f is Inconsistency => f !== undefined);
  }

  private async check({ rk, sentAt, recorded }: Sample): Promise<Inconsistency | undefined> {
    const node = this.cache.nodeFor(rk);
    // Only what readers trust is checked: a node not trusted for reads serves no entry.
    if (node === undefined || !node.readable) return undefined;
    const tag = node.epochTag;
    const key = rk.redisKey;
    let fields: (string | null)[];
    let ttlLeftMs: number;
    try {
      [fields, ttlLeftMs] = await within(node.address, deadlineClock() + this.cache.config.cache.commandTimeoutMs, () =>
        Promise.all([node.client.hmget(key, 'd', 'v', 'g'), node.client.pttl(key)]),
      );
    } catch (err) {
      // The inspector never judges a node: its health is the state machine's business.
      logger.debug('INSPECTOR_CHECK_SKIPPED', { cacheNode: node.address, reason: errorMessage(err) });
      return undefined;
    }
    const checkedAt = Date.now();
    const raw = fields[0] ?? null;
    this.checked++;
    this.cache.metrics.count('InspectorChecks');
    // No entry of the epoch readers trust, or the key gone between the two reads (PTTL -2): nothing served.
    if (raw === null || !raw.startsWith(tag) || ttlLeftMs === -2) return undefined;
    // Every store (FILL, END_WRITE) sets the TTL anew, so the TTL left dates the entry; one without a
    // TTL was not written by the library, and nothing says it came after the invalidation. Dated from
    // the answer's arrival, the estimate errs late by the round trip: never a fresh entry taken for an
    // old one, at the price of missing one stored less than a round trip before the invalidation.
    const storedAt = ttlLeftMs >= 0 ? checkedAt - (entryTtlSeconds(this.cache.config, rk.table) * 1000 - ttlLeftMs) : undefined;
    if (storedAt !== undefined && storedAt >= sentAt) return undefined;
    // A record whose image the entry already held leaves the entry (INVALIDATE's kept answer, issue 13):
    // it was meant to survive. DynamoDB may have moved on since by a change whose record is still on
    // its way (the stream's lag, G2), which is no inconsistency of this record's.
    if (keptBy(recorded, raw.slice(tag.length), fields[1] ?? null, fields[2] ?? null)) return undefined;
    let current: Awaited<ReturnType<ItemCache['store']['get']>>;
    try {
      current = await this.cache.store.get(rk);
    } catch (err) {
      logger.debug('INSPECTOR_CHECK_SKIPPED', { reason: errorMessage(err) });
      return undefined;
    }
    const cached = cachedItem(raw.slice(tag.length), rk);
    if (cached === 'unreadable') return undefined; // readers drop it and read DynamoDB (ItemCache.readResult)
    const versionAttribute = rk.table.versionAttribute;
    const dynamo = current === undefined ? ABSENT : decodeEntry(encodeEntry(current, versionAttribute), versionAttribute);
    if (cached === ABSENT ? dynamo === ABSENT : dynamo !== ABSENT && isDeepStrictEqual(cached, dynamo)) return undefined;
    const found: Inconsistency = {
      itemKey: loggedKey(key, this.cache.config.cache.logKeys),
      cacheNode: node.address,
      cachedVersion: cached === ABSENT ? 'absent' : cached.version,
      dynamoVersion: current === undefined ? 'absent' : (versionOf(rk.table, current) ?? 0),
      entryAgeMs: storedAt === undefined ? undefined : checkedAt - storedAt,
      sinceInvalidationMs: checkedAt - sentAt,
    };
    this.cache.metrics.count('Inconsistencies');
    logger.error('CACHE_INCONSISTENCY', { ...found });
    return found;
  }
}

/** The entry holds exactly what the record said (INVALIDATE's rule for keeping it: version and digest, or not-found). */
function keptBy(recorded: RecordedState | undefined, data: string, version: string | null, digest: string | null): boolean {
  if (recorded === undefined) return false;
  if (recorded.kind === 'absent') return data === ABSENT;
  return data !== ABSENT && version === recorded.version && digest !== null && digest !== '' && digest === recorded.digest;
}

/** A cached entry's payload as an item and version, ABSENT for a cached not-found, or `unreadable`. */
function cachedItem(data: string, rk: ResolvedKey): ReturnType<typeof decodeEntry> | typeof ABSENT | 'unreadable' {
  if (data === ABSENT) return ABSENT;
  try {
    return decodeEntry(data, rk.table.versionAttribute);
  } catch {
    return 'unreadable';
  }
}
