import { Buffer } from 'node:buffer';
import { NumberValue, ValidationError, canonicalDigits, normalizeNumber, tryNormalizeNumber, type Item } from '../../lib/index.ts';
import { holdsSpelledNumbers, SpelledNumber } from '../../lib/codec.ts';
import { readSpelledNumber, spelledDigits, spelledEnd } from '../../lib/numbers.ts';

/**
 * The API's JSON: every DynamoDB type, exactly, in both directions.
 *
 *   DynamoDB          JSON
 *   S, BOOL, NULL     string, true / false, null
 *   N                 a bare JSON number with DynamoDB's own digits. On input a number a double
 *                     cannot hold exactly (more than 2^53, more than ~17 significant digits)
 *                     becomes a NumberValue instead of being rounded.
 *   L, M              array, object
 *   B                 { "$base64": "<standard base64>" }
 *   SS, NS, BS        { "$set": [ strings | numbers | { "$base64": … } ] }
 *
 * An object is read as a tag only when `$base64`, `$set` or `$map` is its ONLY key; a map that
 * happens to have that shape (written around this API) is answered as { "$map": { … } }, which
 * reads back as that map. So what a GET answers can always be PUT back unchanged. Items and keys
 * themselves (the top level of a body) are attribute maps and are never read as tags.
 */

/**
 * JSON.parse, except that numbers keep their exact value: a JSON number a double cannot hold
 * exactly becomes a NumberValue with its digits. Node 20's JSON.parse offers no access to a
 * number's source text, so the number tokens are found first (skipping string literals), and only
 * when one of them is inexact is the text parsed with each such number replaced by a marker, which
 * a walk of the result turns back into the exact value. Throws ValidationError (HTTP 400).
 *
 * One JSON.parse either way (issue 18: a megabyte of long numbers is the cheapest JSON to parse,
 * so every extra pass over it counts). A marker is itself a number, `<index + 1>e20`: no number
 * left as it is can be one, since those are exact doubles (short ones, or exactNumber's), hence
 * integers within 2^53 or fractions below it, and a marker is at least 1e20. A number parses faster
 * than a string, and strings are left alone, so none can be taken for a marker. The marked text is
 * well-formed exactly when the body is: each replaced token is checked first to be a JSON number in
 * a value's place (not a key: `{1:2}`).
 *
 * `spelled` (request bodies): a NumberValue in DynamoDB's spelling, checked here, is a SpelledNumber
 * (lib/codec.ts), whose text the library then takes as it is instead of checking it again.
 */
export function parseJsonExact(text: string, field = 'body', spelled = false): unknown {
  // First, so a body nested a million deep costs MAX_JSON_DEPTH characters, not a parse. Keeps
  // nothing for short numbers: a body of them allocates nothing per token.
  const long = scanTokens(text, field);
  if (long.length === 0) return parse(text, field);
  const numbers: NumberValue[] = [];
  const parts: string[] = [];
  let at = 0;
  for (let t = 0; t < long.length; t += 3) {
    const start = long[t] as number;
    const end = long[t + 1] as number;
    const token = text.slice(start, end);
    // DynamoDB's spelling is a JSON number: only other spellings need the grammar's check.
    const digits = long[t + 2] as number;
    if ((digits < 0 && !isJsonNumber(text, start, end)) || followedByColon(text, end)) malformed(text, field);
    const exact = exactLongNumber(token, digits, spelled);
    if (typeof exact === 'number') continue; // JSON.parse reads it as this very double
    numbers.push(exact);
    parts.push(text.slice(at, start), `${numbers.length}e20`);
    at = end;
  }
  if (numbers.length === 0) return parse(text, field);
  parts.push(text.slice(at));
  let marked: unknown;
  try {
    marked = JSON.parse(parts.join(''));
  } catch {
    malformed(text, field);
  }
  // Depth bounded by scanTokens: the walk's recursion stays within MAX_JSON_DEPTH.
  return unmark(marked, numbers);
}

/** The smallest marker (see parseJsonExact); every number JSON.parse reads as it is lies below 2^53. */
const MARKER = 1e20;

const isMarker = (v: unknown): v is number => typeof v === 'number' && v >= MARKER;

function parse(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ValidationError(field, `malformed JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * The error of a body the marking found malformed (a number token that is not a JSON number or
 * stands where a key must, or marked text JSON.parse refuses): JSON.parse's own, at the body's own
 * position. Well-formed JSON never gets here (its tokens are exact); if it did, it is refused
 * rather than read with rounded numbers.
 */
function malformed(text: string, field: string): never {
  parse(text, field);
  throw new ValidationError(field, 'cannot be read as exact JSON');
}

/** The marked result back: each marker → its exact number, in place (the objects are JSON.parse's own). */
function unmark(v: unknown, numbers: NumberValue[]): unknown {
  if (isMarker(v)) return numbers[Math.round(v / MARKER) - 1];
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (typeof x === 'object' ? x !== null : isMarker(x)) v[i] = unmark(x, numbers);
    }
    return v;
  }
  const obj = v as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    const x = obj[key];
    if (typeof x === 'object' ? x === null : !isMarker(x)) continue;
    const y = unmark(x, numbers);
    if (y === x) continue;
    // JSON.parse made "__proto__" an own property; assignment would set the prototype instead.
    if (key === '__proto__') Object.defineProperty(obj, key, { value: y, enumerable: true, writable: true, configurable: true });
    else obj[key] = y;
  }
  return obj;
}

/** Whether text[start, end) is a JSON number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?. */
function isJsonNumber(text: string, start: number, end: number): boolean {
  let i = start;
  if (text.charCodeAt(i) === MINUS) i++;
  if (text.charCodeAt(i) === ZERO) i++;
  else if (isDigit(text.charCodeAt(i))) while (i < end && isDigit(text.charCodeAt(i))) i++;
  else return false;
  if (i < end && text.charCodeAt(i) === DOT) {
    if (++i >= end || !isDigit(text.charCodeAt(i))) return false;
    while (i < end && isDigit(text.charCodeAt(i))) i++;
  }
  if (i < end && (text.charCodeAt(i) | 0x20) === 0x65) {
    i++;
    if (text.charCodeAt(i) === PLUS || text.charCodeAt(i) === MINUS) i++;
    if (i >= end || !isDigit(text.charCodeAt(i))) return false;
    while (i < end && isDigit(text.charCodeAt(i))) i++;
  }
  return i === end;
}

/** Whether the next character after `end`, past whitespace, is a colon (the token is an object's key). */
function followedByColon(text: string, end: number): boolean {
  let next = end;
  while (next < text.length && isSpace(text.charCodeAt(next))) next++;
  return text.charCodeAt(next) === COLON;
}

/** Deep enough for DynamoDB's 32 levels of nesting; stops a hostile body from exhausting the stack. */
const MAX_DEPTH = 64;

/**
 * How deep the JSON text of a body may nest. An item nests at most MAX_DEPTH levels; a `$map`
 * wrapper spends two JSON levels on one of the item's, and the body and a batch-get's `keys` two
 * more. Checked while the tokens are found, before the walk that puts exact numbers back (which
 * recurses) runs: a body nested thousands deep is a 400 naming the body, never a stack overflow.
 */
export const MAX_JSON_DEPTH = 2 * MAX_DEPTH + 2;

const QUOTE = 0x22;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const MINUS = 0x2d;
const DOT = 0x2e;
const PLUS = 0x2b;
const ZERO = 0x30;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
/** The characters of a number token (digits, `.`, `+`, `-`, `e`, `E`), one look-up each. */
const NUMBER_CHARS = new Uint8Array(128);
for (const c of '0123456789.+-eE') NUMBER_CHARS[c.charCodeAt(0)] = 1;
const isNumberChar = (c: number): boolean => NUMBER_CHARS[c] === 1;
/** The rest of a number token's characters, from `lastIndex` (always matches, perhaps nothing). */
const NUMBER_RUN = /[-+.eE0-9]*/y;
const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * The number tokens of well-formed JSON that are not short (isShortNumber), in triples: start and
 * end offsets, and canonicalDigits of the token (-1 when it is not DynamoDB's spelling). Refuses text nested deeper than MAX_JSON_DEPTH. One pass:
 * every character is visited once (strings are skipped by indexOf, a backslash run is counted
 * once, by the quote that ends it). Terminates on any text; on malformed JSON its tokens are
 * meaningless, and parseJsonExact then reports JSON.parse's error.
 */
function scanTokens(text: string, field: string): number[] {
  const long: number[] = [];
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let end = i + 1;
      for (;;) {
        end = text.indexOf('"', end);
        if (end === -1) {
          end = text.length; // unterminated: malformed, which JSON.parse reports
          break;
        }
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === BACKSLASH) backslashes++;
        if (backslashes % 2 === 0) break;
        end++;
      }
      i = end + 1; // past the closing quote
    } else if (c === MINUS || isDigit(c)) {
      // A short number's characters one by one; past 17 it is long: most long ones are DynamoDB's
      // spelling, read once in place (its end and digits found in the same pass), the others'
      // run found natively.
      let end = i + 1;
      const limit = Math.min(text.length, i + 18);
      while (end < limit && isNumberChar(text.charCodeAt(end))) end++;
      if (end < i + 18 && isShortNumber(text, i, end)) {
        i = end;
        continue;
      }
      const read = readSpelledNumber(text, i);
      const spelled = read >= 0 && !isNumberChar(text.charCodeAt(spelledEnd(read)));
      if (spelled) end = spelledEnd(read);
      else if (end === i + 18) {
        NUMBER_RUN.lastIndex = end;
        NUMBER_RUN.test(text);
        end = NUMBER_RUN.lastIndex;
      }
      long.push(i, end, spelled ? spelledDigits(read) : -1);
      i = end;
    } else {
      if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
        if (++depth > MAX_JSON_DEPTH) throw new ValidationError(field, `nests deeper than ${MAX_JSON_DEPTH} levels of JSON`);
      } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
        depth--;
      }
      i++; // punctuation, whitespace, true / false / null
    }
  }
  return long;
}

/**
 * A number's text as a JS number when that is exact (the same decimal value, within 2^53, as the
 * library's own reads answer), else a NumberValue holding DynamoDB's spelling of it. Text DynamoDB
 * cannot store is passed on as it is, for the library to refuse with the attribute's name.
 */
export function exactNumber(text: string): number | NumberValue {
  if (isShortNumber(text, 0, text.length)) {
    const n = Number(text);
    return n === 0 ? 0 : n; // -0 is DynamoDB's 0
  }
  return exactLongNumber(text, canonicalDigits(text), false);
}

/**
 * exactNumber of a number that is not short, given canonicalDigits of it; `spelled`: a NumberValue
 * of DynamoDB's spelling is a SpelledNumber (see parseJsonExact).
 */
function exactLongNumber(text: string, canonicalDigitsOfText: number, spelled: boolean): number | NumberValue {
  // Already DynamoDB's spelling (one pass, the digits counted in it), else normalized. Not
  // normalizeNumber: a body may hold thousands of numbers DynamoDB cannot store, and an error
  // thrown for each would cost more than reading them.
  let canonical = text;
  let digits = canonicalDigitsOfText;
  if (digits < 0) {
    const normalized = tryNormalizeNumber(text);
    if (normalized === undefined) return new NumberValue(text);
    canonical = normalized;
    digits = canonicalDigits(canonical);
  }
  // More than 17 significant digits: no double spells it (a 38-digit number skips Number and String).
  if (digits > 17) return spelled ? new SpelledNumber(canonical) : new NumberValue(canonical);
  const n = Number(canonical);
  if (Number.isFinite(n) && (!Number.isInteger(n) || Number.isSafeInteger(n)) && tryNormalizeNumber(String(n)) === canonical) {
    return n;
  }
  return spelled && digits >= 0 ? new SpelledNumber(canonical) : new NumberValue(canonical);
}

/**
 * Most numbers in a body: at most 15 digits and no exponent. A double holds every decimal of 15
 * significant digits exactly (its shortest spelling is the same value), and without an exponent
 * such a number lies well inside DynamoDB's range. Reads at most 17 characters of a JSON number.
 */
function isShortNumber(text: string, start: number, end: number): boolean {
  if (end - start > 17) return false;
  let digits = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (isDigit(c)) digits++;
    else if (c !== MINUS && c !== DOT) return false; // an exponent, or a sign JSON does not allow
  }
  return digits <= 15;
}

const TAGS = new Set(['$base64', '$set', '$map']);

function soleKey(obj: object): string | undefined {
  const keys = Object.keys(obj);
  return keys.length === 1 ? keys[0] : undefined;
}

/** A body's attribute map (an item, a key, a PATCH) → the library's native item. */
export function itemFromJson(json: unknown, field: string): Item {
  if (typeof json !== 'object' || json === null || Array.isArray(json) || json instanceof NumberValue) {
    throw new ValidationError(field, 'must be a JSON object of attributes');
  }
  return mapFromJson(json as Record<string, unknown>, field, 1);
}

/** DynamoDB's limit on an attribute name. */
const MAX_NAME_BYTES = 65535;

/**
 * The attribute map in place: `obj` is JSON.parse's own fresh object, whose every name is an own
 * property (an attribute named __proto__ included, which assignment then updates as a plain
 * property, for the library to refuse by name). Only values that change are written back, and a
 * field name is spelled only for an error: a body of 100,000 attributes costs no copy.
 */
function mapFromJson(obj: Record<string, unknown>, field: string, depth: number): Item {
  for (const name of Object.keys(obj)) {
    // Refused here, before any I/O: DynamoDB Local answers an over-long name with a 500.
    if (name.length * 3 > MAX_NAME_BYTES && Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) {
      throw new ValidationError(`${field}.${name.slice(0, 20)}…`, `attribute names are at most ${MAX_NAME_BYTES} bytes`);
    }
    const v = obj[name];
    if (typeof v === 'object' && v !== null) {
      const converted = valueFromJson(v, `${field}.${name}`, depth);
      if (converted !== v) obj[name] = converted;
    } else if (depth > MAX_DEPTH) {
      throw new ValidationError(`${field}.${name}`, `nests deeper than ${MAX_DEPTH} levels`);
    }
  }
  return obj as Item;
}

function valueFromJson(v: unknown, field: string, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new ValidationError(field, `nests deeper than ${MAX_DEPTH} levels`);
  if (typeof v !== 'object' || v === null || v instanceof NumberValue) return v;
  if (Array.isArray(v)) {
    // In place too (the array is JSON.parse's); an element's field is spelled only where it is a container or too deep.
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (typeof x === 'object' && x !== null) {
        const converted = valueFromJson(x, `${field}[${i}]`, depth + 1);
        if (converted !== x) v[i] = converted;
      } else if (depth + 1 > MAX_DEPTH) {
        throw new ValidationError(`${field}[${i}]`, `nests deeper than ${MAX_DEPTH} levels`);
      }
    }
    return v;
  }
  const obj = v as Record<string, unknown>;
  switch (soleKey(obj)) {
    case '$base64':
      return bytesFromBase64(obj.$base64, `${field}.$base64`);
    case '$set':
      return setFromJson(obj.$set, `${field}.$set`);
    case '$map': {
      const m = obj.$map;
      if (typeof m !== 'object' || m === null || Array.isArray(m) || m instanceof NumberValue) {
        throw new ValidationError(`${field}.$map`, 'must be a JSON object');
      }
      return mapFromJson(m as Record<string, unknown>, field, depth + 1);
    }
    default:
      return mapFromJson(obj, field, depth + 1);
  }
}

/**
 * `{"$set": [...]}` → a Set. A value listed twice is one member, as in any set literal (1 and 1.0
 * included), where DynamoDB would refuse the whole request.
 */
function setFromJson(v: unknown, field: string): Set<unknown> {
  if (!Array.isArray(v) || v.length === 0) throw new ValidationError(field, 'must be a non-empty array (DynamoDB has no empty sets)');
  if (v.every((x) => typeof x === 'string')) return new Set(v);
  if (v.every((x) => typeof x === 'number' || x instanceof NumberValue)) {
    return new Set(unique(v as (number | NumberValue)[], (x) => canonicalNumber(String(x instanceof NumberValue ? x.value : x))));
  }
  if (v.every((x) => typeof x === 'object' && x !== null && soleKey(x) === '$base64')) {
    const bytes = v.map((x, i) => bytesFromBase64((x as { $base64: unknown }).$base64, `${field}[${i}].$base64`));
    return new Set(unique(bytes, base64));
  }
  throw new ValidationError(field, 'a set holds only strings, only numbers, or only {"$base64": …} values');
}

function unique<T>(values: T[], identity: (v: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const x of values) if (!seen.has(identity(x))) seen.set(identity(x), x);
  return [...seen.values()];
}

function canonicalNumber(text: string): string {
  return tryNormalizeNumber(text) ?? text; // else refused by the library, with the attribute's name
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Standard base64 (the JSON form) or, for path segments, base64url; padding optional. */
export function bytesFromBase64(v: unknown, field: string): Uint8Array {
  if (typeof v !== 'string' || !(BASE64.test(v) || BASE64URL.test(v))) throw new ValidationError(field, 'must be a base64 string');
  const bare = v.replace(/=+$/, '');
  if (bare.length % 4 === 1 || (v.length !== bare.length && v.length % 4 !== 0)) throw new ValidationError(field, 'is not valid base64');
  return Uint8Array.from(Buffer.from(bare, 'base64'));
}

export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** The library's native item → its JSON form (see the table above); numbers stay NumberValue for stringifyJson. */
export function itemToJson(item: Item): Record<string, unknown> {
  return Object.fromEntries(Object.entries(item).map(([name, v]) => [name, valueToJson(v)]));
}

function valueToJson(v: unknown): unknown {
  if (typeof v === 'bigint') return new NumberValue(v.toString());
  if (typeof v !== 'object' || v === null || v instanceof NumberValue) return v;
  if (v instanceof Uint8Array) return { $base64: base64(v) };
  if (v instanceof Set) return { $set: [...v].map(valueToJson) };
  if (Array.isArray(v)) return v.map(valueToJson);
  const m = itemToJson(v as Item);
  const only = soleKey(m);
  return only !== undefined && TAGS.has(only) ? { $map: m } : m;
}

const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/**
 * JSON text already written (stringifyJson puts it in as it is): an answer's item, written by
 * itemJsonText, is not built again as a JSON form only to be walked once more.
 */
export class JsonText {
  constructor(readonly text: string) {}
}

/**
 * stringifyJson(itemToJson(item)), in one walk of the item (issue 18: the answer to a PUT of a
 * megabyte of numbers is the item again; building its JSON form first was a copy of every list).
 * test/unit/json.test.ts holds it to the two-step text.
 */
export function itemJsonText(item: Item): string {
  const out: string[] = [];
  // An item the library made from numbers all in DynamoDB's spelling (a write's answer read back as
  // written, lib/codec.ts spelledEntryOf): each is a JSON number already, not checked again.
  writeNativeMap(item, out, holdsSpelledNumbers(item));
  return out.join('');
}

/** A native value as valueToJson then write would put it; `spelled`: every NumberValue in it is DynamoDB's spelling. */
function writeNative(v: unknown, out: string[], spelled: boolean): void {
  if (typeof v !== 'object' || v === null || v instanceof NumberValue) {
    if (spelled && v instanceof NumberValue) out.push(v.value);
    else write(typeof v === 'bigint' ? new NumberValue(v.toString()) : v, out);
  } else if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(',');
      const x: unknown = v[i];
      if (x === undefined) out.push('null');
      else writeNative(x, out, spelled);
    }
    out.push(']');
  } else if (v instanceof Uint8Array || v instanceof Set) {
    write(valueToJson(v), out);
  } else {
    const only = soleKey(v);
    if (only !== undefined && TAGS.has(only)) {
      out.push('{"$map":');
      writeNativeMap(v as Item, out, spelled);
      out.push('}');
    } else writeNativeMap(v as Item, out, spelled);
  }
}

/** A map's attributes as itemToJson then write would put them (an undefined value is left out). */
function writeNativeMap(item: Item, out: string[], spelled: boolean): void {
  out.push('{');
  let first = true;
  for (const [k, x] of Object.entries(item)) {
    if (x === undefined) continue;
    if (!first) out.push(',');
    first = false;
    out.push(JSON.stringify(k), ':');
    writeNative(x, out, spelled);
  }
  out.push('}');
}

/**
 * JSON.stringify for answers, except that a NumberValue is written as a bare number with its
 * exact digits (Node 20 has no JSON.rawJSON). Written by hand, so no string value can be confused
 * with a number however it is spelled.
 */
export function stringifyJson(value: unknown): string {
  const out: string[] = [];
  write(value, out);
  return out.join('');
}

function write(v: unknown, out: string[]): void {
  if (v instanceof JsonText) {
    out.push(v.text);
  } else if (v instanceof SpelledNumber) {
    // Checked to be DynamoDB's spelling when it was made, and frozen: a JSON number (no exponent).
    out.push(v.value);
  } else if (v instanceof NumberValue) {
    // DynamoDB's spelling is already a JSON number; anything else is brought into it.
    out.push(JSON_NUMBER.test(v.value) ? v.value : normalizeNumber(v.value, 'number'));
  } else if (typeof v === 'bigint') {
    out.push(v.toString());
  } else if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(',');
      const x: unknown = v[i];
      write(x === undefined ? null : x, out);
    }
    out.push(']');
  } else if (typeof v === 'object' && v !== null) {
    out.push('{');
    let first = true;
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) continue;
      if (!first) out.push(',');
      first = false;
      out.push(JSON.stringify(k), ':');
      write(x, out);
    }
    out.push('}');
  } else {
    out.push(JSON.stringify(v) ?? 'null');
  }
}
