import { randomUUID } from 'node:crypto';
import { encodeAttributes, type Attributes } from '../codec.ts';
import type { RecordedState } from '../cache/protocol.ts';
import type { ItemCache } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';
import { entryTtlSeconds } from '../config.ts';
import { fillMarginSeconds } from './window.ts';

/**
 * Parked invalidations (R6 without a blocked shard). A stream shard delivers in order: a record
 * whose node is unreachable, retried where it stands, holds back every later record of the shard,
 * those of items on healthy nodes included, for as long as the node is away. Instead the consumer
 * writes such a record's key to this table and lets the shard move on. Two readers apply it:
 *
 * - the replayer (replayer.ts), fed by the table's own stream, makes the first attempt at once and
 *   answers every record as done, applied or not, so no parked record waits behind another;
 * - the sweep (sweep.ts), on a schedule, reads the table and retries what is still there and due
 *   (`nextAttemptAt`), pushing each failed item's next attempt back (`attempts`, per item), and
 *   deletes what it applied or what can no longer matter (past `expiresAt`).
 *
 * The parked item is the durable copy: it survives the consumer's container and every stream.
 *
 * Logical name; the physical name is TABLE_PREFIX + this (infra/parking.yml declares the table).
 */
export const PARKING_TABLE_NAME = 'parked-invalidations';

/** What a parked item holds, by attribute name. */
export interface ParkedInvalidation {
  /** The stream record's eventID (a re-delivered record overwrites its own parking). */
  id: string;
  /** Physical name of the table the item belongs to. */
  table: string;
  /** The item's key attributes, as encodeAttributes writes them. */
  keys: string;
  /**
   * What the record said the item now is, when its stream carries new images: `-` (deleted) or
   * `<version>:<digest>` (recordedText). Never item values: a version number and a digest of the
   * content. Absent for KEYS_ONLY records: the invalidation is then unconditional.
   */
  recorded?: string;
  /** Where it could not be applied, and why: for operators reading the table. */
  node: string;
  reason: string;
  /** Epoch ms of the parking; a re-parking of the same record changes it. */
  parkedAt: number;
  /** Failed attempts of the sweep (the replayer's first attempt is not counted): 0 when parked. */
  attempts: number;
  /** Epoch ms before which the sweep leaves the item alone (its back-off). */
  nextAttemptAt: number;
  /** Epoch seconds past which nothing can still need the invalidation (the table's TTL attribute). */
  expiresAt: number;
}

/** What the consumer knows of a record it could not apply. */
export interface Unapplied {
  /** The stream record's eventID, when it has one. */
  eventID: string | undefined;
  rk: ResolvedKey;
  /** The record's table (physical name) and key attributes, as the record gave them. */
  physicalTable: string;
  keys: Attributes;
  /** What the record said the item now is (recorded.ts), if anything. */
  recorded?: RecordedState | undefined;
  /** The node that could not be reached, and why. */
  node: string;
  reason: string;
}

/**
 * When the sweep first looks at a parked item: the replayer tries it as soon as its record arrives,
 * so the sweep picks up only what that attempt (or a replay mapping that is late) left behind.
 */
export const FIRST_SWEEP_DELAY_MS = 60_000;
/**
 * The longest back-off between two sweep attempts on one item while its node stays away. It does
 * not delay an item once its node answers again: the sweep then retries it before it is due.
 */
export const MAX_SWEEP_DELAY_MS = 300_000;

/** The back-off after `attempts` failed sweep attempts: doubling from the first delay, capped. */
export function sweepDelayMs(attempts: number): number {
  return Math.min(FIRST_SWEEP_DELAY_MS * 2 ** Math.max(0, attempts - 1), MAX_SWEEP_DELAY_MS);
}

/** Writes one record's invalidation to the parking table. */
export async function parkInvalidation(cache: ItemCache, parkingTable: string, u: Unapplied): Promise<void> {
  const now = Date.now();
  // Past the entry TTL plus the fill margin, every entry the record could invalidate has expired.
  const keepSeconds = entryTtlSeconds(cache.config, u.rk.table) + fillMarginSeconds(cache.config);
  await cache.store.park(parkingTable, {
    id: { S: u.eventID || randomUUID() },
    table: { S: u.physicalTable },
    keys: { S: encodeAttributes(u.keys) },
    ...(u.recorded !== undefined ? { recorded: { S: recordedText(u.recorded) } } : {}),
    node: { S: u.node },
    reason: { S: u.reason.slice(0, 1000) },
    parkedAt: { N: String(now) },
    attempts: { N: '0' },
    nextAttemptAt: { N: String(now + FIRST_SWEEP_DELAY_MS) },
    expiresAt: { N: String(Math.ceil(now / 1000) + keepSeconds) },
  });
}

/** A RecordedState as a parked item keeps it: `-`, or `<version>:<digest>`. */
export function recordedText(r: RecordedState): string {
  return r.kind === 'absent' ? '-' : `${r.version}:${r.digest}`;
}

/** The inverse of recordedText; undefined (an unconditional invalidation) for anything else. */
export function parseRecorded(text: string | undefined): RecordedState | undefined {
  if (text === '-') return { kind: 'absent' };
  const m = text === undefined ? null : /^(\d+):([A-Za-z0-9+/]+)$/.exec(text);
  return m ? { kind: 'item', version: m[1] as string, digest: m[2] as string } : undefined;
}

/** A parked item as the replayer and the sweep read it (from a stream image or a Scan). */
export interface ParkedRead {
  id: string;
  table: string;
  keys: string;
  /** What the parked record said the item now is; undefined: invalidate unconditionally. */
  recorded: RecordedState | undefined;
  /** As stored: the conditions on a delete or a deferral compare it verbatim. */
  parkedAt: { N: string };
  attempts: number;
  /** Epoch ms; undefined when the item has none (due at once). */
  nextAttemptAt: number | undefined;
  /** Epoch seconds; undefined when the item has none (never past its time). */
  expiresAt: number | undefined;
}

/** Reads a parked item's attributes; throws naming the first one missing. */
export function readParked(image: Record<string, unknown>): ParkedRead {
  const string = (name: string): string => {
    const v = (image[name] as { S?: unknown } | undefined)?.S;
    if (typeof v !== 'string') throw new Error(`parked item has no string '${name}'`);
    return v;
  };
  const number = (name: string): string | undefined => {
    const v = (image[name] as { N?: unknown } | undefined)?.N;
    return typeof v === 'string' ? v : undefined;
  };
  const parkedAt = number('parkedAt');
  if (parkedAt === undefined) throw new Error("parked item has no number 'parkedAt'");
  const expiresAt = number('expiresAt');
  const nextAttemptAt = number('nextAttemptAt');
  return {
    id: string('id'),
    table: string('table'),
    keys: string('keys'),
    recorded: parseRecorded((image.recorded as { S?: string } | undefined)?.S),
    parkedAt: { N: parkedAt },
    attempts: Number(number('attempts') ?? '0'),
    nextAttemptAt: nextAttemptAt === undefined ? undefined : Number(nextAttemptAt),
    expiresAt: expiresAt === undefined ? undefined : Number(expiresAt),
  };
}
