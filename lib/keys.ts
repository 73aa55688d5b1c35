import CRC32 from 'crc-32';
import { NumberValue } from '@aws-sdk/lib-dynamodb';
import { ValidationError } from './errors.ts';
import { VIRTUAL_SHARDS } from './config.ts';
import { normalizeNumber } from './numbers.ts';
import type { KeyAttribute, TableDefinition } from './tables.ts';

/** What a key attribute may hold: S → string, N → number | bigint | NumberValue, B → Uint8Array. */
export type KeyValue = string | number | bigint | NumberValue | Uint8Array;
export type ItemKey = Record<string, KeyValue>;

/** An item's key, checked against its table, with everything the cache derives from it. */
export interface ResolvedKey {
  readonly table: TableDefinition;
  /** Exactly the key attributes, in the form DynamoDB accepts. */
  readonly key: ItemKey;
  /** Physical table name + escaped key parts: what crc32 shards (ARCHITECTURE.md, "The shard map"). */
  readonly shardingKey: string;
  /** The Redis hash that holds the entry: `${shardingKey}:t`. */
  readonly redisKey: string;
  /** crc32(shardingKey) mod 100. */
  readonly shard: number;
}

/** Key parts may hold any character: escape the separator (and cluster hash-tag braces) so no two keys alias (G6). */
const SPECIAL = /[%:{}]/;

/**
 * Whether `s` is well-formed UTF-16 (no lone surrogate). Only such text has a UTF-8 spelling: ioredis
 * writes each lone surrogate as U+FFFD, so `x\uD806`, `x\uDC00` and `x\uFFFD` would be one Redis key (G6).
 */
export function isWellFormedText(s: string): boolean {
  // String.prototype.isWellFormed: Node 20+, not yet in TypeScript's ES2022 lib.
  return (s as string & { isWellFormed(): boolean }).isWellFormed();
}

/** Throws a ValidationError naming `field` when `s` holds a lone surrogate. */
export function checkWellFormedText(s: string, field: string): void {
  if (!isWellFormedText(s)) throw new ValidationError(field, 'is not well-formed Unicode text (it holds a lone UTF-16 surrogate)');
}

function escapePart(s: string): string {
  // Most keys hold none of these: test first, so the hit path allocates no replacement.
  return SPECIAL.test(s) ? s.replace(/[%:{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`) : s;
}

/** Checks one key attribute's value; `text` is its escaped, canonical spelling in cache keys. */
export function checkKeyValue(attr: KeyAttribute, value: unknown, field: string, maxBytes = 2048): { value: KeyValue; text: string } {
  if (value === undefined || value === null) throw new ValidationError(field, 'is required');
  switch (attr.type) {
    case 'S': {
      if (typeof value !== 'string') throw new ValidationError(field, `must be a string, got ${describe(value)}`);
      if (value.length === 0) throw new ValidationError(field, 'must not be empty');
      checkWellFormedText(value, field);
      // A UTF-16 unit is at most 3 UTF-8 bytes: only long strings need counting.
      if (value.length * 3 > maxBytes && Buffer.byteLength(value, 'utf8') > maxBytes)
        throw new ValidationError(field, `is longer than ${maxBytes} bytes`);
      return { value, text: escapePart(value) };
    }
    case 'N': {
      let text: string;
      if (typeof value === 'number') {
        if (!Number.isFinite(value)) throw new ValidationError(field, `must be a finite number, got ${value}`);
        if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
          throw new ValidationError(field, 'is beyond 2^53: pass it as a NumberValue or bigint to keep it exact');
        }
        text = String(value);
      } else if (typeof value === 'bigint') {
        text = value.toString();
      } else if (value instanceof NumberValue) {
        text = value.value;
      } else {
        throw new ValidationError(field, `must be a number, got ${describe(value)}`);
      }
      return { value: value as KeyValue, text: normalizeNumber(text, field) };
    }
    case 'B': {
      if (!(value instanceof Uint8Array)) throw new ValidationError(field, `must be binary (Uint8Array), got ${describe(value)}`);
      if (value.length === 0) throw new ValidationError(field, 'must not be empty');
      if (value.byteLength > maxBytes) throw new ValidationError(field, `is longer than ${maxBytes} bytes`);
      return { value, text: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
    }
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'binary';
  return typeof v;
}

export function virtualShard(shardingKey: string): number {
  // crc32 over the UTF-8 bytes, unsigned, mod 100: as Python's binascii.crc32 (ARCHITECTURE.md).
  return (CRC32.str(shardingKey) >>> 0) % VIRTUAL_SHARDS;
}

/**
 * Checks a key (or an item, whose non-key attributes are ignored) against the table and derives
 * the cache's names for it. `physicalName` keeps stages that share Redis nodes apart.
 */
export function resolveKey(table: TableDefinition, physicalName: string, input: unknown, field = 'key'): ResolvedKey {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ValidationError(field, 'must be an object holding the key attributes');
  }
  const obj = input as Record<string, unknown>;
  // DynamoDB's limits: 2048 bytes for a partition key, 1024 for a sort key; checked here, so a bad key
  // fails before any I/O.
  const hash = checkKeyValue(table.hashKey, obj[table.hashKey.name], `${field}.${table.hashKey.name}`, 2048);
  const key: ItemKey = { [table.hashKey.name]: hash.value };
  let shardingKey = `${physicalName}:${hash.text}`;
  if (table.rangeKey) {
    const range = checkKeyValue(table.rangeKey, obj[table.rangeKey.name], `${field}.${table.rangeKey.name}`, 1024);
    key[table.rangeKey.name] = range.value;
    shardingKey += `:${range.text}`;
  }
  return { table, key, shardingKey, redisKey: `${shardingKey}:t`, shard: virtualShard(shardingKey) };
}
