import type { RecordedState } from '../cache/protocol.ts';
import { decodeAttributes, encodeAttributes, type Attributes } from '../codec.ts';
import { itemDigest } from '../digest.ts';
import { versionOf } from '../store.ts';
import type { TableDefinition } from '../tables.ts';

/** The view types whose records carry the item's new image (tables.json, README "Stream view types"). */
const WITH_NEW_IMAGE = new Set(['NEW_IMAGE', 'NEW_AND_OLD_IMAGES']);

/** The part of a stream record that says what the item now is (Lambda's shape or the SDK's). */
export interface RecordImage {
  eventName?: string;
  dynamodb?: { NewImage?: Record<string, unknown>; StreamViewType?: string };
}

/**
 * What a stream record says its item now is (issue 13), or undefined when it says nothing the cache
 * can compare: a KEYS_ONLY or OLD_IMAGE record (today's behaviour: it invalidates), an INSERT or
 * MODIFY without a new image, an image that cannot be read. A REMOVE counts only on a stream whose
 * table is configured for new images: KEYS_ONLY keeps its behaviour whole. The version and digest
 * are taken as a store of that item keeps them (item-cache.ts toEntry: versionOf, itemDigest), so
 * the image a library write produces matches the entry the write stored.
 */
export function recordedState(table: TableDefinition, record: RecordImage): RecordedState | undefined {
  const view = record.dynamodb?.StreamViewType;
  if (view === undefined || !WITH_NEW_IMAGE.has(view)) return undefined;
  if (record.eventName === 'REMOVE') return { kind: 'absent' };
  if (record.eventName !== 'INSERT' && record.eventName !== 'MODIFY') return undefined;
  const image = record.dynamodb?.NewImage;
  if (image === undefined) return undefined;
  try {
    // Round trip through the codec: base64 (Lambda) and bytes (the SDK) both come out as bytes.
    const av: Attributes = decodeAttributes(encodeAttributes(image as Attributes));
    return { kind: 'item', version: String(versionOf(table, av)), digest: itemDigest(av) };
  } catch {
    return undefined;
  }
}
