import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { NumberValue } from '@aws-sdk/lib-dynamodb';
import { ValidationError } from './errors.ts';
import { normalizeNumber, tryNormalizeNumber } from './numbers.ts';

/** An item as callers see it: lib-dynamodb's native form. */
export type Item = Record<string, unknown>;
export type Attributes = Record<string, AttributeValue>;

/** The longest String(n) of any double n: `-0.0000012345678901234567` (25). */
const MAX_DOUBLE_SPELLING = 25;

/**
 * Numbers come back as JS numbers only when that is exact (the string survives the trip through a
 * double and, for integers, stays within 2^53); every other number is a NumberValue holding
 * DynamoDB's own digits (G4).
 */
export function toNativeNumber(text: string): number | NumberValue {
  // No double's spelling is longer (17 digits, a sign, `0.` and 5 zeros, or an exponent): a long
  // number skips the conversion both ways (issue 18: a body may hold thousands of 170-character numbers).
  if (text.length > MAX_DOUBLE_SPELLING) return new NumberValue(text);
  const n = Number(text);
  if (String(n) === text && (!Number.isInteger(n) || Number.isSafeInteger(n))) return n;
  return new NumberValue(text);
}

/**
 * A NumberValue whose text was found to be DynamoDB's spelling of a number it can store
 * (lib/numbers.ts, readSpelledNumber) by the library's own code that made it: the HTTP functions'
 * exact parse, which reads each number of a body once. Frozen, so its text stays what was checked:
 * toAttributes takes that text as it is instead of checking it again (issue 18: a body of
 * thousands of long numbers; a class costs a prototype check, where a registry of checked values
 * cost more than the check it saves). Internal: lib/index.ts does not export it, and callers'
 * NumberValues are checked.
 */
export class SpelledNumber extends NumberValue {
  constructor(spelling: string) {
    super(spelling);
    Object.freeze(this);
  }
}

/*
 * Native ⇄ attribute values, written here rather than taken from util-dynamodb's marshall: that one
 * picks a value's type from `value.constructor`, so an attribute named "constructor" breaks it, and it
 * keeps caller-owned Buffers in what it returns. The mapping is lib-dynamodb's: string S, number |
 * bigint | NumberValue N, boolean BOOL, null NULL, bytes B, Set → SS | NS | BS, array L, plain
 * object or Map M. `__proto__` cannot be an attribute name: the AWS SDK's own (de)serialisers drop it.
 */

function isBytes(v: unknown): v is Uint8Array | ArrayBuffer | ArrayBufferView {
  return v instanceof Uint8Array || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}

function toBytes(v: Uint8Array | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (v instanceof ArrayBuffer) return new Uint8Array(v.slice(0));
  return Uint8Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
}

/**
 * Where a value sits, spelled only when an error names it: `parent` and, below it, a map name or a
 * list index. A body of 100,000 values must not build 100,000 field strings that no error uses.
 */
type Step = string | number | undefined;

/** `parent.name`, `parent[3]`, or `parent` itself. */
function fieldAt(parent: string, step: Step): string {
  return step === undefined ? parent : typeof step === 'number' ? `${parent}[${step}]` : `${parent}.${step}`;
}

/**
 * A number's text in DynamoDB's spelling (lib/numbers.ts), refusing what DynamoDB cannot store. A
 * JS number's own spelling without an exponent is already DynamoDB's (no padding zeros, at most 17
 * significant digits, well inside the range), so only the others go through normalizeNumber.
 */
function numberText(v: number | bigint | NumberValue, parent: string, step?: Step): string {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new ValidationError(fieldAt(parent, step), `${v} is not a number DynamoDB can store`);
    if (Number.isInteger(v) && !Number.isSafeInteger(v)) {
      throw new ValidationError(fieldAt(parent, step), `${v} is beyond 2^53 and may have lost digits: pass a NumberValue or bigint`);
    }
    const text = String(v);
    if (!text.includes('e')) return text;
    return normalizeNumber(text, fieldAt(parent, step));
  }
  if (v instanceof SpelledNumber) return v.value;
  const text = typeof v === 'bigint' ? v.toString() : v.value;
  const canonical = tryNormalizeNumber(text);
  return canonical ?? normalizeNumber(text, fieldAt(parent, step));
}

const isNumeric = (v: unknown): v is number | bigint | NumberValue =>
  typeof v === 'number' || typeof v === 'bigint' || v instanceof NumberValue;

function checkName(k: unknown, field: string): void {
  if (typeof k !== 'string') throw new ValidationError(field, 'map keys must be strings');
  if (k === '') throw new ValidationError(field, 'attribute names must not be empty');
  if (k === '__proto__') throw new ValidationError(`${field}.__proto__`, 'is not a name the AWS SDK can carry');
  // DynamoDB's limit on an attribute name (a UTF-16 unit is at most 3 UTF-8 bytes: only long names need counting).
  if (k.length * 3 > 65_535 && Buffer.byteLength(k, 'utf8') > 65_535) {
    throw new ValidationError(field, `an attribute name is longer than 65535 bytes`);
  }
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * A native value as an attribute value, numbers in DynamoDB's spelling (normalizeNumber: what a
 * writer caches equals what a later read returns, G4). `parent` and `step` name it in errors.
 */
export function toAttributeValue(v: unknown, parent: string, step?: Step): AttributeValue {
  if (typeof v === 'string') return { S: v };
  if (isNumeric(v)) return { N: numberText(v, parent, step) };
  if (typeof v === 'boolean') return { BOOL: v };
  if (v === null) return { NULL: true };
  const field = fieldAt(parent, step);
  if (isBytes(v)) return { B: toBytes(v) };
  if (v instanceof Set) {
    const items = [...(v as Set<unknown>)];
    if (items.length === 0) throw new ValidationError(field, 'an empty set cannot be stored');
    if (items.every((x) => typeof x === 'string')) return { SS: items as string[] };
    if (items.every(isNumeric)) return { NS: items.map((x) => numberText(x, field)) };
    if (items.every(isBytes)) return { BS: items.map(toBytes) };
    throw new ValidationError(field, 'a set must hold only strings, only numbers or only binary values');
  }
  if (Array.isArray(v)) {
    const list: AttributeValue[] = new Array(v.length);
    for (let i = 0; i < v.length; i++) list[i] = toAttributeValue(v[i], field, i);
    return { L: list };
  }
  if (typeof v === 'object' && (v instanceof Map || isPlainObject(v))) return { M: toAttributes(v as Item, field) };
  const what = v === undefined ? 'undefined' : typeof v === 'object' ? `a ${v.constructor?.name ?? 'class'} instance` : typeof v;
  throw new ValidationError(field, `${what} cannot be stored in DynamoDB`);
}

/** A native item (or key) as DynamoDB attribute values, numbers in DynamoDB's spelling. */
export function toAttributes(item: Item | Map<string, unknown>, field = 'item'): Attributes {
  const out: Attributes = {};
  if (item instanceof Map) {
    for (const [name, value] of item) {
      checkName(name, field);
      out[name] = toAttributeValue(value, field, name);
    }
    return out;
  }
  for (const name of Object.keys(item)) {
    checkName(name, field);
    out[name] = toAttributeValue(item[name], field, name);
  }
  return out;
}

export function fromAttributeValue(av: AttributeValue): unknown {
  if (av.S !== undefined) return av.S;
  if (av.N !== undefined) return toNativeNumber(av.N);
  if (av.BOOL !== undefined) return av.BOOL;
  if (av.NULL !== undefined) return null;
  if (av.B !== undefined) return av.B;
  if (av.M !== undefined) return fromAttributes(av.M);
  if (av.L !== undefined) return av.L.map(fromAttributeValue);
  if (av.SS !== undefined) return new Set(av.SS);
  if (av.NS !== undefined) return new Set(av.NS.map(toNativeNumber));
  if (av.BS !== undefined) return new Set(av.BS);
  throw new Error(`unknown attribute value type: ${Object.keys(av).join(',')}`);
}

/** Attribute values → a native item, leaving out the attribute named `omit` (the version). */
export function fromAttributes(av: Attributes, omit?: string): Item {
  const out: Item = {};
  for (const [name, value] of Object.entries(av)) {
    if (name === omit) continue;
    // The SDK's deserialiser can leave a name with no value behind (it loses "__proto__"): nothing to carry.
    if (value === undefined) continue;
    // Plain assignment of "__proto__" would set the prototype instead of an attribute.
    if (name === '__proto__')
      Object.defineProperty(out, name, { value: fromAttributeValue(value), enumerable: true, writable: true, configurable: true });
    else out[name] = fromAttributeValue(value);
  }
  return out;
}

function normalizeValue(av: AttributeValue, field: string): AttributeValue {
  if (av.N !== undefined) return { N: normalizeNumber(av.N, field) };
  if (av.NS !== undefined) return { NS: av.NS.map((n) => normalizeNumber(n, field)) };
  if (av.L !== undefined) return { L: av.L.map((x, i) => normalizeValue(x, `${field}[${i}]`)) };
  if (av.M !== undefined) return { M: normalizeAttributes(av.M, field) };
  return av;
}

/**
 * Rewrites every number in DynamoDB's own (top-level) spelling and rejects numbers DynamoDB cannot
 * store, so what a writer caches equals what a later read returns (G4).
 */
export function normalizeAttributes(av: Attributes, field = 'item'): Attributes {
  const out: Attributes = {};
  for (const [name, value] of Object.entries(av)) out[name] = normalizeValue(value, `${field}.${name}`);
  return out;
}

/**
 * DynamoDB answers a top-level number in one spelling, but numbers inside maps and lists as they were
 * sent or in yet another spelling (DynamoDB Local: `0.0000001` in a nested number set comes back as
 * `1E-7`). A writer cannot know that spelling, so it caches only items without nested numbers; the
 * others are filled by the next read, from DynamoDB itself.
 */
export function hasNestedNumbers(av: Attributes): boolean {
  const nested = (v: AttributeValue): boolean =>
    v.N !== undefined || v.NS !== undefined || (v.L?.some(nested) ?? false) || (v.M !== undefined && Object.values(v.M).some(nested));
  return Object.values(av).some((v) => (v.L?.some(nested) ?? false) || (v.M !== undefined && Object.values(v.M).some(nested)));
}

/**
 * The cache keeps an item as the JSON of its DynamoDB attribute values (binary as base64): the wire
 * form, so what comes out is what DynamoDB sent in, exactly, for every type.
 */
export function encodeAttributes(av: Attributes): string {
  // A replacer costs several times the plain stringify: only for items that hold binary.
  if (!hasBinaryIn(av)) return JSON.stringify(av);
  // Read the raw value from the holder: a Buffer's toJSON would otherwise run before the replacer.
  return JSON.stringify(av, function (this: Record<string, unknown>, k: string, v: unknown) {
    const raw = this[k];
    return raw instanceof Uint8Array ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') : v;
  });
}

function hasBinary(v: AttributeValue): boolean {
  if (v.B !== undefined || v.BS !== undefined) return true;
  if (v.L !== undefined) {
    for (const x of v.L) if (hasBinary(x)) return true;
  } else if (v.M !== undefined) return hasBinaryIn(v.M);
  return false;
}

function hasBinaryIn(map: Attributes): boolean {
  for (const name in map) {
    const v = map[name];
    if (v !== undefined && hasBinary(v)) return true;
  }
  return false;
}

const fromBase64 = (b64: string): Uint8Array => Uint8Array.from(Buffer.from(b64, 'base64'));

function reviveBinary(av: AttributeValue): AttributeValue {
  const v = av as unknown as Record<string, unknown>;
  if (typeof v.B === 'string') return { B: fromBase64(v.B) };
  if (Array.isArray(v.BS)) return { BS: (v.BS as string[]).map(fromBase64) };
  if (av.M !== undefined) reviveBinaryIn(av.M);
  else if (av.L !== undefined) av.L.forEach((x, i, l) => (l[i] = reviveBinary(x)));
  return av;
}

function reviveBinaryIn(map: Attributes): Attributes {
  for (const name of Object.keys(map)) map[name] = reviveBinary(map[name] as AttributeValue);
  return map;
}

/** Binary is always written as `"B":"…"` or `"BS":[…]` (JSON.stringify puts no space there). */
const BINARY = /"BS?":/;

/**
 * The inverse of encodeAttributes (parked keys, stream records; a hit decodes with decodeEntry): a
 * plain JSON.parse (a reviver costs ~7× as much), then binary revived only when the text can hold any.
 */
export function decodeAttributes(text: string): Attributes {
  const av = JSON.parse(text) as Attributes;
  return BINARY.test(text) ? reviveBinaryIn(av) : av;
}

/** Only values plain JSON carries exactly: strings, exact numbers, booleans, null, lists, maps. */
function isPlainJson(av: AttributeValue): boolean {
  if (av.S !== undefined || av.BOOL !== undefined || av.NULL !== undefined) return true;
  // Longer than any double's spelling: not plain, and no NumberValue made to find that out.
  if (av.N !== undefined) return av.N.length <= MAX_DOUBLE_SPELLING && typeof toNativeNumber(av.N) === 'number';
  if (av.L !== undefined) return av.L.every(isPlainJson);
  if (av.M !== undefined) return Object.values(av.M).every((v) => v === undefined || isPlainJson(v));
  return false;
}

/**
 * A cache entry: an item and its version. Most items hold only values JSON carries exactly; those
 * are kept as `[version,{…native item…}]`, which a hit decodes with one JSON.parse and nothing
 * else (the attribute-value form costs 3–4× as much, most of a hit's CPU). Items with sets, binary
 * or numbers a double cannot hold exactly keep the attribute-value form (`{…}`, see
 * encodeAttributes). Both decode to what fromAttributes gives for DynamoDB's answer (G4).
 */
export function encodeEntry(av: Attributes, versionAttribute: string): string {
  if (isPlainEntry(av, versionAttribute)) return JSON.stringify([entryVersion(av, versionAttribute), fromAttributes(av, versionAttribute)]);
  return encodeAttributes(av);
}

/** The version attribute as the plain form keeps it (NaN when it is not a number). */
function entryVersion(av: Attributes, versionAttribute: string): number {
  const v = av[versionAttribute];
  return v === undefined ? 0 : v.N !== undefined ? Number(v.N) : NaN;
}

/** Whether encodeEntry keeps `av` in the plain form. */
function isPlainEntry(av: Attributes, versionAttribute: string): boolean {
  const v = av[versionAttribute];
  const version = entryVersion(av, versionAttribute);
  const plain = Number.isSafeInteger(version) && version >= 0 && (v === undefined || v.N === String(version));
  return plain && Object.entries(av).every(([name, x]) => name === versionAttribute || x === undefined || isPlainJson(x));
}

export interface DecodedEntry {
  item: Item;
  /** The version attribute (0 when the item has none), as versionOf reads it. */
  version: number;
}

/**
 * Longest entry text decoded: an item is at most 400 KB (DynamoDB's limit), and its JSON here at
 * most ~8× that (`{"BOOL":false},` spells a 2-byte list element in 15 characters, an escaped
 * control character takes 6). Bounds the cost of a planted entry before JSON.parse reads it.
 */
export const MAX_ENTRY_LENGTH = 8 * 1024 * 1024;

/**
 * How deep an entry's item may nest: the bound a request body has (functions/http/json.ts,
 * MAX_DEPTH), counted the same way (a top-level attribute's value is at depth 1). DynamoDB itself
 * stores 32 levels. Keeps every recursive walk of an item the library returns within the stack.
 */
export const MAX_ITEM_DEPTH = 64;

/** Why an entry is not served, as a fixed phrase: logs carry it, never the entry's bytes. */
export type UnreadableReason =
  | 'too large'
  | 'not JSON'
  | 'not an entry'
  | 'too deep'
  | 'not an attribute value'
  | 'bad number'
  | 'bad binary';

/**
 * A cache entry that cannot be served (a faulty or tampered node). Its message is the reason only:
 * the entry's bytes are item data, and a parser's message would quote them.
 * @internal ItemCache drops the entry and reads DynamoDB.
 */
export class UnreadableEntryError extends Error {
  readonly reason: UnreadableReason;
  constructor(reason: UnreadableReason) {
    super(`cache entry unreadable: ${reason}`);
    this.name = 'UnreadableEntryError';
    this.reason = reason;
  }
}

/**
 * The inverse of encodeEntry. Everything read from Redis is untrusted input, checked as strictly
 * as a request body: bounded length and depth, numbers DynamoDB can store, only attribute value
 * types. Throws UnreadableEntryError. The plain form stays one JSON.parse plus a look at each value
 * (no copy; its numbers are doubles, checked by value); number spellings are checked in the
 * attribute-value form, whose walk converts the item anyway (binary included, in the same walk).
 */
export function decodeEntry(text: string, versionAttribute: string): DecodedEntry {
  if (text.length > MAX_ENTRY_LENGTH) throw new UnreadableEntryError('too large');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UnreadableEntryError('not JSON');
  }
  if (Array.isArray(parsed)) {
    if (parsed.length === 2) {
      const [version, item] = parsed as [unknown, unknown];
      if (Number.isSafeInteger(version) && (version as number) >= 0 && isObject(item)) {
        for (const name in item) checkPlainValue(item[name], 1);
        return { item, version: version as number };
      }
    }
    throw new UnreadableEntryError('not an entry');
  }
  if (!isObject(parsed)) throw new UnreadableEntryError('not an entry');
  decodedNumberValue = false;
  const item = itemFromEntry(parsed, 1, versionAttribute);
  if (decodedNumberValue) itemsWithNumberValues.add(item);
  const v = parsed[versionAttribute];
  const n = isObject(v) && typeof v.N === 'string' ? v.N : undefined;
  if (n !== undefined && tryNormalizeNumber(n) === undefined) throw new UnreadableEntryError('bad number');
  return { item, version: n === undefined ? 0 : Number(n) };
}

/**
 * What decodeEntry(encodeEntry(av, versionAttribute), versionAttribute) returns, without the
 * text's round trip: a write's answer (ItemCache) is what a read of its entry returns, and a
 * megabyte item is not encoded and parsed again for it (issue 18). fromAttributes, with binary
 * copied into fresh plain Uint8Arrays as decoding base64 gives. For attribute values from the SDK
 * or toAttributes (numbers DynamoDB stores: the checks decodeEntry makes pass).
 */
export function entryOf(av: Attributes, versionAttribute: string): DecodedEntry {
  const n = av[versionAttribute]?.N;
  return { item: entryItemOf(av, versionAttribute), version: n === undefined ? 0 : Number(n) };
}

/**
 * Items entryOf made from attribute values whose every number is in DynamoDB's spelling (checked by
 * whoever registered them: sameSpelling against the library's own toAttributes output). The HTTP
 * answer then writes their numbers as they are (functions/http/json.ts itemJsonText): one item
 * registered, not each number (issue 18: an answer of thousands of long numbers).
 */
const itemsOfSpelledNumbers = new WeakSet<object>();

/** entryOf of attribute values whose numbers are all DynamoDB's spelling, the item registered as such. */
export function spelledEntryOf(av: Attributes, versionAttribute: string): DecodedEntry {
  const entry = entryOf(av, versionAttribute);
  itemsOfSpelledNumbers.add(entry.item);
  return entry;
}

/** Whether `item` came from spelledEntryOf: every number in it, at any depth, is in DynamoDB's spelling. */
export function holdsSpelledNumbers(item: object): boolean {
  return itemsOfSpelledNumbers.has(item);
}

/**
 * Whether `a` (DynamoDB's answer) is `b` (what was written), spelling for spelling: the same type,
 * the same strings and number spellings, lists and sets in the same order, nested maps with the same
 * names in the same order. Then JSON.stringify gives both the same text and entryOf the same item.
 * False whenever in doubt: binary, a type not listed, a value with more than one member.
 */
export function sameSpelling(a: AttributeValue | undefined, b: AttributeValue | undefined): boolean {
  if (a === undefined || b === undefined || !soleMember(a)) return false;
  if (a.N !== undefined) return a.N === b.N;
  if (a.S !== undefined) return a.S === b.S;
  if (a.L !== undefined) {
    const x = a.L;
    const y = b.L;
    if (y === undefined || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!sameSpelling(x[i], y[i])) return false;
    return true;
  }
  if (a.M !== undefined) {
    if (b.M === undefined) return false;
    const x = Object.keys(a.M);
    const y = Object.keys(b.M);
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) {
      const name = x[i] as string;
      if (name !== y[i] || !sameSpelling(a.M[name], b.M[name])) return false;
    }
    return true;
  }
  if (a.BOOL !== undefined) return a.BOOL === b.BOOL;
  if (a.NULL !== undefined) return a.NULL === b.NULL;
  if (a.SS !== undefined) return sameStrings(a.SS, b.SS);
  if (a.NS !== undefined) return sameStrings(a.NS, b.NS);
  return false;
}

function sameStrings(x: string[], y: string[] | undefined): boolean {
  if (y === undefined || x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Exactly one member set (JSON.stringify writes only the members that are not undefined). */
function soleMember(av: AttributeValue): boolean {
  let members = 0;
  for (const type in av) if ((av as unknown as Record<string, unknown>)[type] !== undefined && ++members > 1) return false;
  return members === 1;
}

/**
 * The JSON text of each top-level attribute of `av` (name → text) when its entry takes the
 * attribute-value form without binary (encodeEntry: JSON.stringify of the whole map), else
 * undefined. A map whose every attribute is the same spelling as `av`'s (sameSpelling), in any
 * order, has the entry entryFromPieces assembles from these (issue 18: a put's entry written while
 * DynamoDB stores the item, not after its read-back).
 */
export function entryPieces(av: Attributes, versionAttribute: string): Map<string, string> | undefined {
  if (hasBinaryIn(av) || isPlainEntry(av, versionAttribute)) return undefined;
  const pieces = new Map<string, string>();
  for (const name of Object.keys(av)) {
    const value = av[name];
    if (value !== undefined) pieces.set(name, JSON.stringify(value));
  }
  return pieces;
}

/** encodeEntry(av) from entryPieces of a map of the same attributes and spellings (`av`'s own order). */
export function entryFromPieces(av: Attributes, pieces: ReadonlyMap<string, string>): string {
  // Concatenated, not joined: no copy of a megabyte piece here (the Redis client reads the text once).
  let text = '{';
  for (const name of Object.keys(av)) {
    if (av[name] === undefined) continue;
    const piece = pieces.get(name);
    if (piece === undefined) throw new Error(`entryFromPieces: no piece for attribute ${JSON.stringify(name)}`);
    text += `${text.length > 1 ? ',' : ''}${JSON.stringify(name)}:` + piece;
  }
  return `${text}}`;
}

function entryItemOf(map: Attributes, omit?: string): Item {
  const out: Item = {};
  for (const name in map) {
    const value = map[name];
    if (name === omit || value === undefined) continue;
    const v = entryValueOf(value);
    // Plain assignment of "__proto__" would set the prototype instead of an attribute.
    if (name === '__proto__') Object.defineProperty(out, name, { value: v, enumerable: true, writable: true, configurable: true });
    else out[name] = v;
  }
  return out;
}

const plainBytes = (b: unknown): Uint8Array => (typeof b === 'string' ? fromBase64(b) : new Uint8Array(b as Uint8Array));

function entryValueOf(av: AttributeValue): unknown {
  if (av.B !== undefined) return plainBytes(av.B);
  if (av.BS !== undefined) return new Set(av.BS.map(plainBytes));
  if (av.M !== undefined) return entryItemOf(av.M);
  if (av.L !== undefined) return av.L.map(entryValueOf);
  return fromAttributeValue(av);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value of the plain form: JSON.parse made its types; depth and numbers are left to check. */
function checkPlainValue(v: unknown, depth: number): void {
  if (depth > MAX_ITEM_DEPTH) throw new UnreadableEntryError('too deep');
  if (typeof v === 'number') {
    // encodeEntry writes only numbers a double holds exactly, within DynamoDB's range.
    if (!Number.isFinite(v) || (Number.isInteger(v) ? !Number.isSafeInteger(v) : Math.abs(v) < 1e-130)) {
      throw new UnreadableEntryError('bad number');
    }
  } else if (Array.isArray(v)) {
    for (const x of v) checkPlainValue(x, depth + 1);
  } else if (typeof v === 'object' && v !== null) {
    for (const name in v) checkPlainValue((v as Record<string, unknown>)[name], depth + 1);
  }
}

/** An attribute-value map of an entry → a native item (fromAttributes, checked), leaving out `omit`. */
function itemFromEntry(map: Record<string, unknown>, depth: number, omit?: string): Item {
  const out: Item = {};
  for (const name in map) {
    if (name === omit) continue;
    const value = valueFromEntry(map[name], depth);
    // Plain assignment of "__proto__" would set the prototype instead of an attribute.
    if (name === '__proto__') Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
    else out[name] = value;
  }
  return out;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Items decodeEntry made that hold a NumberValue anywhere (only the attribute-value form can): the
 * drop-in client asks this instead of walking every item it answers (lib/drop-in/client.ts).
 */
const itemsWithNumberValues = new WeakSet<object>();
/** Set while decoding an attribute-value entry, when a number became a NumberValue. */
let decodedNumberValue = false;

/** Whether `item`, an item decodeEntry returned, holds a NumberValue (a number a double cannot hold) anywhere. */
export function holdsDecodedNumberValue(item: object): boolean {
  return itemsWithNumberValues.has(item);
}

function entryNumber(v: unknown): number | NumberValue {
  if (typeof v !== 'string' || tryNormalizeNumber(v) === undefined) throw new UnreadableEntryError('bad number');
  const n = toNativeNumber(v);
  if (typeof n !== 'number') decodedNumberValue = true;
  return n;
}

function entryBinary(v: unknown): Uint8Array {
  if (typeof v !== 'string' || !BASE64.test(v)) throw new UnreadableEntryError('bad binary');
  return fromBase64(v);
}

function nonEmptyArray(v: unknown): unknown[] {
  if (!Array.isArray(v) || v.length === 0) throw new UnreadableEntryError('not an attribute value');
  return v;
}

/** One attribute value of an entry (as encodeAttributes writes it: binary as base64) → native. */
function valueFromEntry(av: unknown, depth: number): unknown {
  if (depth > MAX_ITEM_DEPTH) throw new UnreadableEntryError('too deep');
  if (!isObject(av)) throw new UnreadableEntryError('not an attribute value');
  let type: string | undefined;
  for (const key in av) {
    if (type !== undefined) throw new UnreadableEntryError('not an attribute value');
    type = key;
  }
  const v = type === undefined ? undefined : av[type];
  switch (type) {
    case 'S':
      if (typeof v === 'string') return v;
      break;
    case 'N':
      return entryNumber(v);
    case 'BOOL':
      if (typeof v === 'boolean') return v;
      break;
    case 'NULL':
      if (v === true) return null;
      break;
    case 'B':
      return entryBinary(v);
    case 'M':
      if (isObject(v)) return itemFromEntry(v, depth + 1);
      break;
    case 'L':
      if (Array.isArray(v)) return v.map((x) => valueFromEntry(x, depth + 1));
      break;
    case 'SS': {
      const members = nonEmptyArray(v);
      if (members.every((x) => typeof x === 'string')) return new Set(members);
      break;
    }
    case 'NS':
      return new Set(nonEmptyArray(v).map(entryNumber));
    case 'BS':
      return new Set(nonEmptyArray(v).map(entryBinary));
  }
  throw new UnreadableEntryError('not an attribute value');
}

export function encodeItem(item: Item): string {
  return encodeAttributes(toAttributes(item));
}

export function decodeItem(text: string): Item {
  return fromAttributes(decodeAttributes(text));
}
