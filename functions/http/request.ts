import { Buffer } from 'node:buffer';
import {
  NumberValue,
  ValidationError,
  normalizeNumber,
  type Item,
  type ItemKey,
  type KeyAttribute,
  type KeyValue,
  type TableDefinition,
} from '../../lib/index.ts';
import { bytesFromBase64, exactNumber, itemFromJson, itemToJson, parseJsonExact, stringifyJson } from './json.ts';

/** What a route sees of a request: path parameters already decoded, header names lower-case. */
export interface HttpRequest {
  method: string;
  params: Readonly<Record<string, string>>;
  query: Readonly<Record<string, string | undefined>>;
  headers: Readonly<Record<string, string | undefined>>;
  /** The body as text (base64 bodies already decoded); undefined when there is none. */
  body: string | undefined;
  /** Headers a route wants on its answer whatever it is, error included (x-cache on a 404). */
  responseHeaders: Record<string, string>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** API Gateway base64-encodes bodies it considers binary; a body must be UTF-8 either way. */
export function bodyText(body: string | undefined, isBase64Encoded: boolean | undefined): string | undefined {
  if (body === undefined || body === null) return undefined;
  if (!isBase64Encoded) return body;
  try {
    return utf8.decode(Buffer.from(body, 'base64'));
  } catch {
    throw new ValidationError('body', 'is not UTF-8 text');
  }
}

/** The body as one JSON object; numbers exact, tags not yet decoded. */
export function jsonObjectBody(req: HttpRequest): Record<string, unknown> {
  if (req.body === undefined || req.body.trim() === '') throw new ValidationError('body', 'a JSON object is required');
  // Its numbers go to the library: those checked here need no second check there (issue 18).
  const json = parseJsonExact(req.body, 'body', true);
  if (typeof json !== 'object' || json === null || Array.isArray(json) || json instanceof NumberValue) {
    throw new ValidationError('body', 'must be a JSON object');
  }
  return json as Record<string, unknown>;
}

/** A body that is an item's attributes (PUT, PATCH). */
export function itemBody(req: HttpRequest): Item {
  return itemFromJson(jsonObjectBody(req), 'body');
}

/**
 * One key attribute from its text (a decoded path segment or query value), typed by the table: N
 * parses as a number (a JS number when exact, else a NumberValue), B is base64 or base64url, S is
 * the text.
 */
export function keyValueFromText(attr: KeyAttribute, text: string, field: string): KeyValue {
  switch (attr.type) {
    case 'S':
      return text;
    case 'N':
      // normalizeNumber would forgive surrounding blanks; a key in a URL has none.
      if (text !== text.trim()) throw new ValidationError(field, `'${text}' is not a number`);
      return exactNumber(normalizeNumber(text, field));
    case 'B':
      return bytesFromBase64(text, field);
  }
}

/** The item key a path names; the library checks it further (lengths, emptiness) when it resolves it. */
export function keyFromPath(table: TableDefinition, hash: string, range: string | undefined): ItemKey {
  const key: ItemKey = { [table.hashKey.name]: keyValueFromText(table.hashKey, hash, `key.${table.hashKey.name}`) };
  if (table.rangeKey) {
    if (range === undefined) {
      throw new ValidationError(
        `key.${table.rangeKey.name}`,
        `is required: '${table.name}' items live at /tables/${table.name}/items/{${table.hashKey.name}}/{${table.rangeKey.name}}`,
      );
    }
    key[table.rangeKey.name] = keyValueFromText(table.rangeKey, range, `key.${table.rangeKey.name}`);
  } else if (range !== undefined) {
    throw new ValidationError(
      'key',
      `'${table.name}' has no range key: its items live at /tables/${table.name}/items/{${table.hashKey.name}}` +
        ` (a key holding '/' goes in the query string: /tables/${table.name}/item?hash=…)`,
    );
  }
  return key;
}

/** Checks that the query holds only `allowed` parameters, naming the first one it does not expect. */
export function onlyQueryParameters(query: HttpRequest['query'], allowed: readonly string[], usage: string): void {
  const unknown = Object.keys(query).find((name) => !allowed.includes(name));
  if (unknown !== undefined) throw new ValidationError(`query.${unknown}`, `is not a parameter here: ${usage}`);
}

/** `/tables/{table}/item?hash=…&range=…`, as the table reads it. */
export function queryFormUsage(table: TableDefinition): string {
  return `/tables/${table.name}/item?hash=<${table.hashKey.name}>${table.rangeKey ? `&range=<${table.rangeKey.name}>` : ''}`;
}

/**
 * The item key of the query form, `?hash=…&range=…`: any key, whatever its characters, on every
 * API Gateway flavour (README, "Addressing items"). An empty value is a key attribute of empty
 * text, which the library refuses by name.
 */
export function keyFromQuery(table: TableDefinition, query: HttpRequest['query']): ItemKey {
  const usage = queryFormUsage(table);
  onlyQueryParameters(query, table.rangeKey ? ['hash', 'range'] : ['hash'], usage);
  const hash = query.hash;
  if (hash === undefined) throw new ValidationError('query.hash', `is required: ${usage}`);
  const key: ItemKey = { [table.hashKey.name]: keyValueFromText(table.hashKey, hash, `key.${table.hashKey.name}`) };
  if (table.rangeKey) {
    const range = query.range;
    if (range === undefined) throw new ValidationError('query.range', `is required: ${usage}`);
    key[table.rangeKey.name] = keyValueFromText(table.rangeKey, range, `key.${table.rangeKey.name}`);
  }
  return key;
}

/**
 * If-Match, decided here:
 * - absent: no condition;
 * - `"<version>"` or bare `<version>` (the ETag we send, with or without its quotes): the write
 *   applies only when the item is at that version, else 412;
 * - `*`: the item must exist (any version); PUT and DELETE of a missing item are 412, PATCH of
 *   a missing item stays 404 as it is without the header;
 * - anything else (weak tags, lists of tags) is 400: we only ever hand out one strong tag.
 */
export type IfMatch = { kind: 'version'; version: number } | { kind: 'exists' } | undefined;

export function parseIfMatch(header: string | undefined): IfMatch {
  if (header === undefined) return undefined;
  const v = header.trim();
  if (v === '*') return { kind: 'exists' };
  const m = /^(?:"(\d{1,15})"|(\d{1,15}))$/.exec(v);
  if (!m) throw new ValidationError('If-Match', `expected "<version>" (the ETag) or *, got '${header}'`);
  return { kind: 'version', version: Number(m[1] ?? m[2]) };
}

export function etag(version: number): string {
  return `"${version}"`;
}

/** `limit` query parameter; the library checks the range (1 to 100). */
export function parseLimit(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^\d{1,6}$/.test(raw)) throw new ValidationError('limit', `must be a whole number from 1 to 100, got '${raw}'`);
  return Number(raw);
}

/**
 * A partition cursor is the last key of the previous page in this API's JSON (exact numbers,
 * binary as $base64), base64url-encoded: opaque to callers, checked by the library when it returns.
 */
export function encodeCursor(key: ItemKey): string {
  return Buffer.from(stringifyJson(itemToJson(key)), 'utf8').toString('base64url');
}

export function decodeCursor(raw: string | undefined): Item | undefined {
  if (raw === undefined) return undefined;
  if (!/^[A-Za-z0-9_-]+$/.test(raw)) throw new ValidationError('cursor', 'is not a cursor this API returned');
  let text: string;
  try {
    text = utf8.decode(Buffer.from(raw, 'base64url'));
  } catch {
    throw new ValidationError('cursor', 'is not a cursor this API returned');
  }
  return itemFromJson(parseJsonExact(text, 'cursor'), 'cursor');
}
