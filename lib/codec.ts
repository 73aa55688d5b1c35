import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { NumberValue } from '@aws-sdk/lib-dynamodb';
import { marshall, unmarshall, type marshallOptions, type unmarshallOptions } from '@aws-sdk/util-dynamodb';
import { normalizeNumber } from './numbers.ts';

/** An item as callers see it (lib-dynamodb's native form). */
export type Item = Record<string, unknown>;

/**
 * Numbers come back as JS numbers only when that is exact (the string survives the trip through a
 * double and, for integers, stays within 2^53); every other number is a NumberValue holding
 * DynamoDB's own digits (G4).
 */
export function toNativeNumber(text: string): number | NumberValue {
  const n = Number(text);
  if (String(n) === text && (!Number.isInteger(n) || Number.isSafeInteger(n))) return n;
  return new NumberValue(text);
}

export const MARSHALL_OPTIONS: marshallOptions = {
  convertEmptyValues: false,
  removeUndefinedValues: false,
  convertClassInstanceToMap: false,
};

export const UNMARSHALL_OPTIONS: unmarshallOptions = { wrapNumbers: toNativeNumber };

/**
 * The cache keeps an item as the JSON of its DynamoDB attribute values (binary as base64): the wire
 * form, so what comes out is what DynamoDB sent in, exactly, for every type.
 */
export function encodeAttributes(av: Record<string, AttributeValue>): string {
  // Read the raw value from the holder: a Buffer's toJSON would otherwise run before the replacer.
  return JSON.stringify(av, function (this: Record<string, unknown>, k: string, v: unknown) {
    const raw = this[k];
    return raw instanceof Uint8Array ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') : v;
  });
}

const toBytes = (b64: string): Uint8Array => Uint8Array.from(Buffer.from(b64, 'base64'));

export function decodeAttributes(text: string): Record<string, AttributeValue> {
  // A string under "B" or an array under "BS" can only be binary: attribute names map to objects.
  return JSON.parse(text, (k, v: unknown) => {
    if (k === 'B' && typeof v === 'string') return toBytes(v);
    if (k === 'BS' && Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.map(toBytes);
    return v;
  }) as Record<string, AttributeValue>;
}

export function toAttributes(item: Item): Record<string, AttributeValue> {
  return marshall(item, MARSHALL_OPTIONS);
}

export function fromAttributes(av: Record<string, AttributeValue>): Item {
  return unmarshall(av, UNMARSHALL_OPTIONS);
}

export function encodeItem(item: Item): string {
  return encodeAttributes(toAttributes(item));
}

export function decodeItem(text: string): Item {
  return fromAttributes(decodeAttributes(text));
}

function normalizeValue(av: AttributeValue, field: string): AttributeValue {
  if (av.N !== undefined) return { N: normalizeNumber(av.N, field) };
  if (av.NS !== undefined) return { NS: av.NS.map((n) => normalizeNumber(n, field)) };
  if (av.L !== undefined) return { L: av.L.map((x, i) => normalizeValue(x, `${field}[${i}]`)) };
  if (av.M !== undefined) return { M: normalizeAttributes(av.M, field) };
  return av;
}

/**
 * Rewrites every number in DynamoDB's own spelling, so what a writer puts in the cache is exactly
 * what a later read from DynamoDB returns (G4), and rejects numbers DynamoDB cannot store.
 */
export function normalizeAttributes(av: Record<string, AttributeValue>, field = 'item'): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const [name, value] of Object.entries(av)) out[name] = normalizeValue(value, `${field}.${name}`);
  return out;
}
