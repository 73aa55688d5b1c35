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

/**
 * Where the canonical text goes: hashed in pieces of about CHUNK characters as it is written, so
 * that the text of an item of a megabyte is never one string (issue 18: a string that large is
 * garbage in the collector's large-object space, one more per write). The digest is the same: a
 * hash of pieces is the hash of their concatenation, and a piece ends only between whole writes, so
 * no surrogate pair is cut (JSON.stringify leaves no lone surrogate in the text).
 */
class CanonicalText {
  private text = '';
  private readonly hash = createHash('sha256');

  write(piece: string): void {
    this.text += piece;
    if (this.text.length >= CHUNK) {
      this.hash.update(this.text);
      this.text = '';
    }
  }

  digest(): string {
    this.hash.update(this.text);
    return this.hash.digest('base64').slice(0, DIGEST_LENGTH);
  }
}

const CHUNK = 64 * 1024;

/** One attribute value's canonical JSON text, written to `out`; `spelled`: its numbers are already in DynamoDB's spelling. */
function canonicalValue(av: AttributeValue, spelled: boolean, out: CanonicalText): void {
  const v = av as unknown as Record<string, unknown>;
  if (av.S !== undefined) out.write(`{"S":${JSON.stringify(av.S)}}`);
  else if (av.N !== undefined) {
    // DynamoDB's spelling needs no escaping (digits, `-`, `.`): JSON.stringify only for a refused one.
    const n = spelled ? av.N : canonicalNumber(av.N);
    out.write(n.charCodeAt(0) === REFUSED ? `{"N":${JSON.stringify(n)}}` : `{"N":"${n}"}`);
  } else if (av.BOOL !== undefined) out.write(av.BOOL ? '{"BOOL":true}' : '{"BOOL":false}');
  else if (av.NULL !== undefined) out.write('{"NULL":true}');
  else if (v.B !== undefined) out.write(`{"B":${JSON.stringify(b64(v.B))}}`);
  else if (av.SS !== undefined) out.write(`{"SS":${JSON.stringify(sorted(av.SS))}}`);
  else if (av.NS !== undefined) out.write(`{"NS":${JSON.stringify(sorted(spelled ? av.NS : av.NS.map(canonicalNumber)))}}`);
  else if (v.BS !== undefined) out.write(`{"BS":${JSON.stringify(sorted((v.BS as unknown[]).map(b64)))}}`);
  else if (av.L !== undefined) {
    out.write('{"L":[');
    for (let i = 0; i < av.L.length; i++) {
      if (i > 0) out.write(',');
      canonicalValue(av.L[i] as AttributeValue, spelled, out);
    }
    out.write(']}');
  } else if (av.M !== undefined) {
    out.write('{"M":');
    canonicalMap(av.M, spelled, out);
    out.write('}');
  } else throw new Error(`unknown attribute value type: ${Object.keys(av).join(',')}`);
}

/** A map's entries as [name, value] pairs in name order (an array: JSON keeps its order, and no name is special). */
function canonicalMap(map: Attributes, spelled: boolean, out: CanonicalText): void {
  const names = Object.keys(map)
    .filter((name) => map[name] !== undefined)
    .sort();
  out.write('[');
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    out.write(`${i > 0 ? ',' : ''}[${JSON.stringify(name)},`);
    canonicalValue(map[name] as AttributeValue, spelled, out);
    out.write(']');
  }
  out.write(']');
}

/** The digest of an item as DynamoDB attribute values (binary as bytes or base64). */
export function itemDigest(item: Attributes): string {
  const out = new CanonicalText();
  canonicalMap(item, false, out);
  return out.digest();
}

/**
 * itemDigest of an item whose every number the caller knows is already in DynamoDB's spelling
 * (the library's own toAttributes output): each is taken as it is, not spelled again. The same
 * digest, one pass fewer per number.
 */
export function spelledItemDigest(item: Attributes): string {
  const out = new CanonicalText();
  canonicalMap(item, true, out);
  return out.digest();
}
