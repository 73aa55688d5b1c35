import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { createHash } from 'node:crypto';
import type { Attributes } from './codec.ts';
import { tryNormalizeNumber } from './numbers.ts';

/*
 * The canonical digest of an item's content (issue 13): what a cache entry and a stream record's new
 * image are compared by, so that a record of a change the cache already holds leaves its entry alone.
 * Two spellings of one item give one digest: attribute and map-key order do not matter, numbers are
 * taken in DynamoDB's canonical spelling (numbers.ts: `1.50`, `1.5` and `15E-1` are one number, and
 * DynamoDB's own answers spell nested numbers differently from top-level ones), and sets are sets
 * (member order does not matter). Binary is compared by its bytes, whether it arrives as bytes (the
 * SDK) or as base64 (a Lambda stream event). Everything else (types, list order, every attribute,
 * the version attribute included) counts: two items with one digest are one item.
 */

/** Length of a digest: 128 bits of SHA-256, base64 (no padding). */
export const DIGEST_LENGTH = 22;

const b64 = (v: unknown): string =>
  typeof v === 'string' ? Buffer.from(v, 'base64').toString('base64') : Buffer.from(v as Uint8Array).toString('base64');

/** A number in DynamoDB's canonical spelling; a spelling it would refuse is kept as it came (it never matches a stored one). */
const canonicalNumber = (n: string): string => tryNormalizeNumber(n) ?? `!${n}`;

const sorted = (xs: string[]): string[] => [...new Set(xs)].sort();

/** The canonical form of one attribute value: plain JSON, deterministic, typed. */
function canonicalValue(av: AttributeValue): unknown {
  const v = av as unknown as Record<string, unknown>;
  if (av.S !== undefined) return { S: av.S };
  if (av.N !== undefined) return { N: canonicalNumber(av.N) };
  if (av.BOOL !== undefined) return { BOOL: av.BOOL };
  if (av.NULL !== undefined) return { NULL: true };
  if (v.B !== undefined) return { B: b64(v.B) };
  if (av.SS !== undefined) return { SS: sorted(av.SS) };
  if (av.NS !== undefined) return { NS: sorted(av.NS.map(canonicalNumber)) };
  if (v.BS !== undefined) return { BS: sorted((v.BS as unknown[]).map(b64)) };
  if (av.L !== undefined) return { L: av.L.map(canonicalValue) };
  if (av.M !== undefined) return { M: canonicalMap(av.M) };
  throw new Error(`unknown attribute value type: ${Object.keys(av).join(',')}`);
}

/** A map's entries as [name, value] pairs in name order (an array: JSON keeps its order, and no name is special). */
function canonicalMap(map: Attributes): [string, unknown][] {
  return Object.keys(map)
    .filter((name) => map[name] !== undefined)
    .sort()
    .map((name) => [name, canonicalValue(map[name] as AttributeValue)]);
}

/** The digest of an item as DynamoDB attribute values (binary as bytes or base64). */
export function itemDigest(item: Attributes): string {
  return createHash('sha256')
    .update(JSON.stringify(canonicalMap(item)))
    .digest('base64')
    .slice(0, DIGEST_LENGTH);
}
