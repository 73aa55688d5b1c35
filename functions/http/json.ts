import { Buffer } from 'node:buffer';
import { NumberValue, ValidationError, normalizeNumber, tryNormalizeNumber, type Item } from '../../lib/index.ts';

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
 * number's source text, so the number tokens are found first (skipping string literals) and,
 * only when one of them is inexact, the text is parsed again with each number replaced by a
 * string that a reviver turns back into the exact value. Throws ValidationError (HTTP 400).
 */
export function parseJsonExact(text: string, field = 'body'): unknown {
  // First, so a body nested a million deep costs MAX_JSON_DEPTH characters, not a parse.
  // The first scan keeps nothing and stops at the first number that is not short; only then is the
  // text scanned again, whole, keeping the tokens: a body of short numbers allocates nothing per token.
  let scan = scanTokens(text, field, false);
  if (!scan.onlyShort) scan = scanTokens(text, field, true);
  const { tokens, onlyShort } = scan;
  let plain: unknown;
  try {
    // Validates the syntax: the tokens found above are used only for well-formed JSON.
    plain = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(field, `malformed JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  // The common body: every number short (see isShortNumber), which a double holds exactly.
  if (onlyShort) return plain;
  const numbers = tokens.filter((t) => t.kind === 'number').map((t) => exactNumber(text.slice(t.start, t.end)));
  if (numbers.every((n) => typeof n === 'number')) return plain;
  // Every value string is marked 's', every number becomes "n<index>": no user string can be
  // mistaken for a number, whatever it holds. Object keys are left alone.
  let marked = '';
  let at = 0;
  let index = 0;
  for (const t of tokens) {
    marked += text.slice(at, t.start);
    marked += t.kind === 'number' ? `"n${index++}"` : `"s${text.slice(t.start + 1, t.end)}`;
    at = t.end;
  }
  marked += text.slice(at);
  try {
    return JSON.parse(marked, (_key, value: unknown) => {
      if (typeof value !== 'string') return value;
      return value[0] === 'n' ? numbers[Number(value.slice(1))] : value.slice(1);
    });
  } catch (err) {
    // Not reached: scanTokens bounds the depth the (recursive) reviver walks.
    throw new ValidationError(field, err instanceof RangeError ? 'is nested too deeply' : `cannot be read: ${String(err)}`);
  }
}

interface Token {
  kind: 'number' | 'string';
  start: number;
  end: number;
}

/** Deep enough for DynamoDB's 32 levels of nesting; stops a hostile body from exhausting the stack. */
const MAX_DEPTH = 64;

/**
 * How deep the JSON text of a body may nest. An item nests at most MAX_DEPTH levels; a `$map`
 * wrapper spends two JSON levels on one of the item's, and the body and a batch-get's `keys` two
 * more. Checked while the tokens are found, before the reviver (which recurses) runs: a body nested
 * thousands deep is a 400 naming the body, never a stack overflow.
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

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isNumberChar = (c: number): boolean => isDigit(c) || c === 0x2e || c === 0x2b || c === MINUS || c === 0x45 || c === 0x65;
const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * Number tokens and value strings (not object keys) of well-formed JSON, in order, and whether
 * every number is short; without `keep`, no tokens, and it stops at the first number that is not
 * short (the depth is then checked by the scan that keeps them). Refuses text
 * nested deeper than MAX_JSON_DEPTH. One pass: every character is visited once (strings are
 * skipped by indexOf, a backslash run is counted once, by the quote that ends it). Terminates on
 * any text; on malformed JSON its tokens are meaningless and unused.
 */
function scanTokens(text: string, field: string, keep: boolean): { tokens: Token[]; onlyShort: boolean } {
  const tokens: Token[] = [];
  let onlyShort = true;
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
      end++; // past the closing quote
      let next = end;
      while (next < text.length && isSpace(text.charCodeAt(next))) next++;
      if (keep && text.charCodeAt(next) !== COLON) tokens.push({ kind: 'string', start: i, end });
      i = end;
    } else if (c === MINUS || isDigit(c)) {
      let end = i + 1;
      while (end < text.length && isNumberChar(text.charCodeAt(end))) end++;
      if (onlyShort && !isShortNumber(text, i, end)) {
        onlyShort = false;
        if (!keep) return { tokens, onlyShort };
      }
      if (keep) tokens.push({ kind: 'number', start: i, end });
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
  return { tokens, onlyShort };
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
  // Not normalizeNumber: a body may hold thousands of numbers DynamoDB cannot store, and an error
  // thrown for each would cost more than reading them.
  const canonical = tryNormalizeNumber(text);
  if (canonical === undefined) return new NumberValue(text);
  // More than 17 significant digits: no double spells it (a 38-digit number skips Number and String).
  if (significantDigits(canonical) > 17) return new NumberValue(canonical);
  const n = Number(canonical);
  if (Number.isFinite(n) && (!Number.isInteger(n) || Number.isSafeInteger(n)) && tryNormalizeNumber(String(n)) === canonical) {
    return n;
  }
  return new NumberValue(canonical);
}

/** Significant digits of a number in DynamoDB's spelling (from its first non-zero digit to its last). */
function significantDigits(canonical: string): number {
  let first = -1;
  let last = -1;
  for (let i = 0; i < canonical.length; i++) {
    const c = canonical.charCodeAt(i);
    if (c > 0x30 && c <= 0x39) {
      if (first === -1) first = i;
      last = i;
    }
  }
  if (first === -1) return 0;
  const point = canonical.indexOf('.');
  return last - first + 1 - (point > first && point < last ? 1 : 0);
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
  if (v instanceof NumberValue) {
    // DynamoDB's spelling is already a JSON number; anything else is brought into it.
    out.push(JSON_NUMBER.test(v.value) ? v.value : normalizeNumber(v.value, 'number'));
  } else if (typeof v === 'bigint') {
    out.push(v.toString());
  } else if (Array.isArray(v)) {
    out.push('[');
    v.forEach((x, i) => {
      if (i > 0) out.push(',');
      write(x === undefined ? null : x, out);
    });
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
