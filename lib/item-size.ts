import { Buffer } from 'node:buffer';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { Attributes } from './codec.ts';

/**
 * DynamoDB's item size limit, 400 KB: an item of exactly this many bytes is stored, one byte more
 * is refused (measured on DynamoDB Local).
 */
export const MAX_ITEM_BYTES = 400 * 1024;

/**
 * An item's size as DynamoDB counts it against MAX_ITEM_BYTES: every top-level attribute's name
 * (UTF-8 bytes) plus its value. Values: a string its UTF-8 bytes, a binary its raw bytes, a
 * boolean or null 1, a number numberSize, a set the sum of its members, a list 3 + (1 + each
 * element), a map 3 + (name + 1 + each value). The rule of DynamoDB's documentation ("Item sizes
 * and formats"), with numbers counted exactly as DynamoDB Local counts them; each case was
 * measured at the boundary (test/integration/item-size.test.ts). Not verified against AWS.
 * One pass over the values, no allocation: it runs on every PUT and PATCH before any I/O.
 */
export function itemSize(av: Attributes): number {
  let size = 0;
  for (const name in av) size += utf8Length(name) + valueSize(av[name] as AttributeValue);
  return size;
}

function valueSize(v: AttributeValue): number {
  if (v.S !== undefined) return utf8Length(v.S);
  if (v.N !== undefined) return numberSize(v.N);
  if (v.B !== undefined) return v.B.byteLength;
  if (v.BOOL !== undefined || v.NULL !== undefined) return 1;
  if (v.L !== undefined) {
    let size = 3;
    for (const x of v.L) size += 1 + valueSize(x);
    return size;
  }
  if (v.M !== undefined) {
    let size = 3;
    for (const name in v.M) size += utf8Length(name) + 1 + valueSize(v.M[name] as AttributeValue);
    return size;
  }
  let size = 0;
  if (v.SS !== undefined) for (const s of v.SS) size += utf8Length(s);
  else if (v.NS !== undefined) for (const n of v.NS) size += numberSize(n);
  else if (v.BS !== undefined) for (const b of v.BS) size += b.byteLength;
  return size;
}

/**
 * UTF-8 bytes of well-formed text (the library refuses lone surrogates before sizes are counted).
 * Short names are counted here: a native call costs more than the loop for the names of a body of
 * 100,000 attributes.
 */
function utf8Length(s: string): number {
  if (s.length > 32) return Buffer.byteLength(s, 'utf8');
  let bytes = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // 2 bytes from U+0080, 3 from U+0800; a surrogate pair (4 bytes) is two units of 2 more each.
    if (c >= 0x80) bytes += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
  }
  return bytes;
}

/** A sign, zeros and the point before the first non-zero digit (sticky: no match object is made). */
const LEADING = /[-0.]*/y;
const ZERO = 0x30;
const NINE = 0x39;
const DOT = 0x2e;
const MINUS = 0x2d;

/**
 * A number's size in DynamoDB's spelling (plain decimal, as lib/numbers.ts writes it). DynamoDB
 * keeps a number as one exponent byte and base-100 digits: its significant digits are grouped in
 * pairs aligned on the decimal point (10^1 10^0 | 10^-1 10^-2 …), leading and trailing zero pairs
 * dropped, and a negative number takes one terminating byte more unless it fills all 20 pairs. So
 * zero is 1 byte, `1.5` is 3 (`01`,`50`), `15` is 2, `-1.5` is 4, a 38-digit integer 20. Measured on
 * DynamoDB Local (the documentation's "1 byte per two significant digits, plus 1" is this rule
 * without the alignment and the sign).
 */
export function numberSize(text: string): number {
  const n = text.length;
  let point = text.indexOf('.');
  if (point === -1) point = n;
  // The first and last non-zero digits, found from each end; the digits between are not read.
  const first = firstSignificant(text, point);
  if (first === n) return 1;
  let last = n - 1;
  while (isZeroOrDot(text.charCodeAt(last))) last--;
  // Their powers of ten.
  const high = first < point ? point - first - 1 : point - first;
  const low = last < point ? point - last - 1 : point - last;
  const pairs = Math.floor(high / 2) - Math.floor(low / 2) + 1;
  return 1 + pairs + (text.charCodeAt(0) === MINUS && pairs < 20 ? 1 : 0);
}

const isZeroOrDot = (c: number): boolean => c === ZERO || c === DOT;

/** Runs of zeros by length, to compare a number's leading zeros with at once. */
const ZERO_RUNS = Array.from({ length: 257 }, (_, k) => '0'.repeat(k));

/**
 * Where LEADING stops in `text` (whose point is at `point`, or its length): past the sign, the
 * zeros and the point. DynamoDB's spelling of a number below 1 (`0.`, zeros, then at most 38
 * significant digits: the longest spellings there are, `-0.` and 129 zeros leading) has its first
 * significant digit among its last 38 characters: that one is looked for there, and the zeros
 * before it compared with a run of zeros at once instead of being read one by one (issue 18: a
 * body of thousands of such numbers). Any other text, or one this does not confirm, is read by
 * LEADING as before.
 */
function firstSignificant(text: string, point: number): number {
  const sign = text.charCodeAt(0) === MINUS ? 1 : 0;
  if (point === sign + 1 && text.charCodeAt(sign) === ZERO) {
    let i = Math.max(point + 1, text.length - 38);
    while (text.charCodeAt(i) === ZERO) i++;
    const c = text.charCodeAt(i);
    const zeros = i - point - 1;
    if (c > ZERO && c <= NINE && zeros < ZERO_RUNS.length && text.substring(point + 1, i) === ZERO_RUNS[zeros]) return i;
  }
  LEADING.lastIndex = 0;
  LEADING.test(text);
  return LEADING.lastIndex;
}
