import { randomUUID } from 'node:crypto';
import { encodeAttributes, type Attributes } from '../codec.ts';
import type { ItemCache } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';

/**
 * Parked invalidations (R6 without a blocked shard). A stream shard delivers in order: a record
 * whose node is unreachable, retried where it stands, holds back every later record of the shard,
 * those of items on healthy nodes included, for as long as the node is away. Instead the consumer
 * writes such a record's key to this table and lets the shard move on; the table's own stream
 * (NEW_IMAGE) feeds the replayer, which invalidates the key and is retried until the node takes
 * it. The parked item is the durable copy: it survives the consumer's container, and its stream
 * record is retried for as long as the application streams' records would have been.
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
  /** Where it could not be applied, and why: for operators reading the table. */
  node: string;
  reason: string;
  parkedAt: number;
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
  /** The node that could not be reached, and why. */
  node: string;
  reason: string;
}

/**
 * A fill that read an item before its write may still store it this long after the write (its
 * lease, then the fill): the parked invalidation must outlive the entry TTL by that much.
 */
const PARKING_MARGIN_SECONDS = 300;

/** Writes one record's invalidation to the parking table. */
export async function parkInvalidation(cache: ItemCache, parkingTable: string, u: Unapplied): Promise<void> {
  const now = Date.now();
  const keepSeconds = (u.rk.table.ttlSeconds ?? cache.config.cache.ttlSeconds) + PARKING_MARGIN_SECONDS;
  await cache.store.park(parkingTable, {
    id: { S: u.eventID || randomUUID() },
    table: { S: u.physicalTable },
    keys: { S: encodeAttributes(u.keys) },
    node: { S: u.node },
    reason: { S: u.reason.slice(0, 1000) },
    parkedAt: { N: String(now) },
    expiresAt: { N: String(Math.ceil(now / 1000) + keepSeconds) },
  });
}
