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
const REFUSED = 0x21; // `!`

const sorted = (xs: string[]): string[] => [...new Set(xs)].sort();

/*
 * The canonical form is written as JSON text directly, in one walk: the same text as
 * JSON.stringify of [name, value] pairs in name order, each value `{"<type>": …}` (a map's value
 * its own pairs, a set its sorted distinct members), without building that structure first
 * (issue 18: an item of thousands of numbers). test/unit/digest.test.ts pins the text's digests.
 */

/** One attribute value's canonical JSON text; `spelled`: its numbers are already in DynamoDB's spelling. */
function canonicalValue(av: AttributeValue, spelled: boolean): string {
  const v = av as unknown as Record<string, unknown>;
  if (av.S !== undefined) return `{"S":${JSON.stringify(av.S)}}`;
  if (av.N !== undefined) {
    // DynamoDB's spelling needs no escaping (digits, `-`, `.`): JSON.stringify only for a refused one.
    const n = spelled ? av.N : canonicalNumber(av.N);
    return n.charCodeAt(0) === REFUSED ? `{"N":${JSON.stringify(n)}}` : `{"N":"${n}"}`;
  }
  if (av.BOOL !== undefined) return av.BOOL ? '{"BOOL":true}' : '{"BOOL":false}';
  if (av.NULL !== undefined) return '{"NULL":true}';
  if (v.B !== undefined) return `{"B":${JSON.stringify(b64(v.B))}}`;
  if (av.SS !== undefined) return `{"SS":${JSON.stringify(sorted(av.SS))}}`;
  if (av.NS !== undefined) return `{"NS":${JSON.stringify(sorted(spelled ? av.NS : av.NS.map(canonicalNumber)))}}`;
  if (v.BS !== undefined) return `{"BS":${JSON.stringify(sorted((v.BS as unknown[]).map(b64)))}}`;
  if (av.L !== undefined) {
    let text = '{"L":[';
    for (let i = 0; i < av.L.length; i++) text += (i > 0 ? ',' : '') + canonicalValue(av.L[i] as AttributeValue, spelled);
    return `${text}]}`;
  }
  if (av.M !== undefined) return `{"M":${canonicalMap(av.M, spelled)}}`;
  throw new Error(`unknown attribute value type: ${Object.keys(av).join(',')}`);
}

/** A map's entries as [name, value] pairs in name order (an array: JSON keeps its order, and no name is special). */
function canonicalMap(map: Attributes, spelled: boolean): string {
  const names = Object.keys(map)
    .filter((name) => map[name] !== undefined)
    .sort();
  let text = '[';
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    text += `${i > 0 ? ',' : ''}[${JSON.stringify(name)},${canonicalValue(map[name] as AttributeValue, spelled)}]`;
  }
  return `${text}]`;
}

/** The digest of an item as DynamoDB attribute values (binary as bytes or base64). */
export function itemDigest(item: Attributes): string {
  return digestOf(canonicalMap(item, false));
}

/**
 * itemDigest of an item whose every number the caller knows is already in DynamoDB's spelling
 * (the library's own toAttributes output): each is taken as it is, not spelled again. The same
 * digest, one pass fewer per number.
 */
export function spelledItemDigest(item: Attributes): string {
  return digestOf(canonicalMap(item, true));
}

function digestOf(canonical: string): string {
  return createHash('sha256').update(canonical).digest('base64').slice(0, DIGEST_LENGTH);
}
