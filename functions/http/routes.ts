import {
  ItemNotFoundError,
  MAX_BATCH_KEYS,
  ValidationError,
  type Item,
  type ItemCache,
  type ItemKey,
  type TableDefinition,
  type WriteOptions,
} from '../../lib/index.ts';
import type { Reply, Route } from './app.ts';
import { itemFromJson, itemJsonText, itemToJson, JsonText, stringifyJson } from './json.ts';
import {
  decodeCursor,
  encodeCursor,
  etag,
  itemBody,
  jsonObjectBody,
  keyFromPath,
  keyFromQuery,
  keyValueFromText,
  onlyQueryParameters,
  parseIfMatch,
  parseLimit,
  type HttpRequest,
} from './request.ts';

// Two ways to address an item (README, "Addressing items"): the path form, for keys without '/' or
// '%', and the query form, for any key on every API Gateway flavour.
const ITEM = '/tables/{table}/items/{hash}';
const RANGE_ITEM = '/tables/{table}/items/{hash}/{range}';
const QUERY_ITEM = '/tables/{table}/item';
/** A partition page by the query form: `?hash=…`. */
const QUERY_PARTITION = '/tables/{table}/items';

function param(req: HttpRequest, name: string): string {
  const v = req.params[name];
  if (v === undefined) throw new ValidationError('path', `missing {${name}}`);
  return v;
}

function tableOf(req: HttpRequest, cache: ItemCache): TableDefinition {
  return cache.table(param(req, 'table'));
}

/** The item key of either form: the path's `{hash}/{range}`, else the query's `hash` and `range`. */
function requestKey(req: HttpRequest, table: TableDefinition): ItemKey {
  const hash = req.params.hash;
  if (hash === undefined) return keyFromQuery(table, req.query);
  return keyFromPath(table, hash, req.params.range);
}

function itemReply(result: { item: Item; version: number }): Reply {
  return { status: 200, body: new JsonText(itemJsonText(result.item)), headers: { ETag: etag(result.version) } };
}

/** GET on an item path: the item, or, for `/items/{hash}` of a table with a range key, a page of that partition. */
async function readItem(req: HttpRequest, cache: ItemCache): Promise<Reply> {
  const table = tableOf(req, cache);
  if (table.rangeKey && req.params.hash !== undefined && req.params.range === undefined) {
    return readPartition(req, cache, table, req.params.hash);
  }
  const r = await cache.get(table.name, requestKey(req, table));
  req.responseHeaders['x-cache'] = r.cache;
  if (r.item === undefined) throw new ItemNotFoundError(`'${table.name}' has no item with that key`);
  return itemReply({ item: r.item, version: r.version ?? 0 });
}

/** GET `/tables/{table}/items?hash=…`: a page of the partition, by the query form. */
async function readPartitionByQuery(req: HttpRequest, cache: ItemCache): Promise<Reply> {
  const table = tableOf(req, cache);
  const usage = `/tables/${table.name}/items?hash=<${table.hashKey.name}>[&limit=…&cursor=…]`;
  if (!table.rangeKey) {
    throw new ValidationError(
      'path',
      `'${table.name}' has no range key, so no partitions to page: read an item at /tables/${table.name}/item?hash=…`,
    );
  }
  onlyQueryParameters(req.query, ['hash', 'limit', 'cursor'], usage);
  const hash = req.query.hash;
  if (hash === undefined) throw new ValidationError('query.hash', `is required: ${usage}`);
  return readPartition(req, cache, table, hash);
}

async function readPartition(req: HttpRequest, cache: ItemCache, table: TableDefinition, hashText: string): Promise<Reply> {
  const hash = keyValueFromText(table.hashKey, hashText, `key.${table.hashKey.name}`);
  const options = { limit: parseLimit(req.query.limit), cursor: decodeCursor(req.query.cursor) };
  // Pages come from DynamoDB: the cache holds items by key, never partitions.
  req.responseHeaders['x-cache'] = 'bypass';
  const page = await cache.queryPartition(table.name, hash, options);
  return { status: 200, body: { items: page.items.map(itemToJson), next: page.next && encodeCursor(page.next) } };
}

/**
 * Lambda's quota on a synchronous invocation's response payload: 6 MB (6,291,456 bytes), counted
 * over the whole result API Gateway receives (status, headers, and the body as a JSON string, so
 * escaped a second time). Past it the invocation fails and the caller gets a 5xx.
 */
const LAMBDA_RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024;

/** Room left for the status, the headers and the result's own JSON around the body. */
const RESPONSE_MARGIN_BYTES = 64 * 1024;

/** The most a batch-get's body may weigh inside the Lambda result (see LAMBDA_RESPONSE_LIMIT_BYTES). */
export const MAX_BATCH_GET_BODY_BYTES = LAMBDA_RESPONSE_LIMIT_BYTES - RESPONSE_MARGIN_BYTES;

/** What one value adds to the Lambda result: its JSON, escaped again as part of the body string, and a comma. */
function weightInResult(json: unknown): number {
  return Buffer.byteLength(JSON.stringify(stringifyJson(json)), 'utf8') - 2 + 1;
}

/**
 * The batch-get answer, within MAX_BATCH_GET_BODY_BYTES: items in request order while they fit,
 * the keys of the rest as `unprocessed` (to be asked again), as DynamoDB's BatchGetItem answers
 * past its own 16 MB. Counted against the worst case (every found item's key also listed as
 * unprocessed), so the sum never passes the limit; the first item is always answered (one item is
 * at most 400 KB, a few MB as escaped JSON), so asking again always progresses.
 */
function fitBatchAnswer(table: TableDefinition, items: Item[], missing: ItemKey[]): Record<string, unknown> {
  const keyOf = (item: Item): ItemKey => {
    const key: ItemKey = { [table.hashKey.name]: item[table.hashKey.name] as ItemKey[string] };
    if (table.rangeKey) key[table.rangeKey.name] = item[table.rangeKey.name] as ItemKey[string];
    return key;
  };
  const jsonItems = items.map(itemToJson);
  const jsonMissing = missing.map(itemToJson);
  const jsonKeys = items.map((item) => itemToJson(keyOf(item)));
  let used = 64 + [...jsonMissing, ...jsonKeys].reduce((n, k) => n + weightInResult(k), 0);
  let fit = 0;
  for (const item of jsonItems) {
    const weight = weightInResult(item);
    if (fit > 0 && used + weight > MAX_BATCH_GET_BODY_BYTES) break;
    used += weight;
    fit++;
  }
  if (fit === jsonItems.length) return { items: jsonItems, missing: jsonMissing };
  return { items: jsonItems.slice(0, fit), missing: jsonMissing, unprocessed: jsonKeys.slice(fit) };
}

async function batchGet(req: HttpRequest, cache: ItemCache): Promise<Reply> {
  const table = tableOf(req, cache);
  const keys = jsonObjectBody(req).keys;
  if (!Array.isArray(keys)) throw new ValidationError('keys', 'must be an array of keys');
  // Checked before decoding, so an oversized request costs nothing.
  if (keys.length > MAX_BATCH_KEYS) throw new ValidationError('keys', `at most ${MAX_BATCH_KEYS} keys, got ${keys.length}`);
  const r = await cache.batchGet(
    table.name,
    keys.map((k, i) => itemFromJson(k, `keys[${i}]`)),
  );
  return { status: 200, body: fitBatchAnswer(table, r.items, r.missing) };
}

function isKeyAttribute(table: TableDefinition, name: string): boolean {
  return name === table.hashKey.name || name === table.rangeKey?.name;
}

/** A key attribute in a body may repeat the path's value (a GET answer sent back), never change it. */
function checkBodyKey(cache: ItemCache, table: TableDefinition, key: ItemKey, name: string, value: unknown): void {
  if (value === null) throw new ValidationError(`body.${name}`, 'is a key attribute and cannot be removed');
  const fromBody = cache.resolve(table, { ...key, [name]: value }, 'body');
  if (fromBody.redisKey !== cache.resolve(table, key).redisKey) {
    throw new ValidationError(`body.${name}`, 'is a key attribute and disagrees with the key in the path');
  }
}

/** If-Match as the library's write options: `*` = the item must exist, a version = at that version. */
function writeCondition(ifMatch: ReturnType<typeof parseIfMatch>): WriteOptions {
  if (ifMatch === undefined) return {};
  return ifMatch.kind === 'exists' ? { ifExists: true } : { ifVersion: ifMatch.version };
}

async function putItem(req: HttpRequest, cache: ItemCache): Promise<Reply> {
  const table = tableOf(req, cache);
  const key = requestKey(req, table);
  const ifMatch = parseIfMatch(req.headers['if-match']);
  const body = itemBody(req);
  // Only the key attributes: a body of 100,000 attributes is not walked here.
  for (const name of Object.keys(key)) if (Object.hasOwn(body, name)) checkBodyKey(cache, table, key, name, body[name]);
  // Into the body itself (itemBody's fresh object): a copy of 100,000 attributes costs more than the parse.
  const item = Object.assign(body, key);
  return itemReply(await cache.put(table.name, item, writeCondition(ifMatch)));
}

/** PATCH: top-level attributes to set; `null` removes one. */
async function patchItem(req: HttpRequest, cache: ItemCache): Promise<Reply> {
  const table = tableOf(req, cache);
  const key = requestKey(req, table);
  const ifMatch = parseIfMatch(req.headers['if-match']);
  const set: [string, unknown][] = [];
  const remove: string[] = [];
  for (const [name, value] of Object.entries(itemBody(req))) {
    if (isKeyAttribute(table, name)) checkBodyKey(cache, table, key, name, value);
    else if (value === null) remove.push(name);
    else set.push([name, value]);
  }
  // An update already requires the item to exist, so `*` adds nothing; a missing item is 404.
  const ifVersion = ifMatch?.kind === 'version' ? ifMatch.version : undefined;
  return itemReply(await cache.update(table.name, key, { set: Object.fromEntries(set), remove }, { ifVersion }));
}

/** DELETE: 204 whether or not there was an item, unless If-Match says it must be there. */
async function deleteItem(req: HttpRequest, cache: ItemCache): Promise<Reply> {
  const table = tableOf(req, cache);
  const key = requestKey(req, table);
  const ifMatch = parseIfMatch(req.headers['if-match']);
  await cache.delete(table.name, key, writeCondition(ifMatch));
  return { status: 204 };
}

async function health(_req: HttpRequest, cache: ItemCache): Promise<Reply> {
  // The library's addresses are already without user and password.
  const nodes = (await cache.checkHealth()).map(({ id, address, status, since }) => ({ id, address, status, since }));
  return { status: 200, body: { nodes } };
}

/** Served by the read function: needs GetItem, BatchGetItem, Query. */
export const readRoutes: readonly Route[] = [
  { method: 'GET', path: ITEM, handle: readItem },
  { method: 'GET', path: RANGE_ITEM, handle: readItem },
  { method: 'GET', path: QUERY_ITEM, handle: readItem },
  { method: 'GET', path: QUERY_PARTITION, handle: readPartitionByQuery },
  { method: 'POST', path: '/tables/{table}/batch-get', handle: batchGet },
];

/** Served by the write function: needs PutItem, UpdateItem, DeleteItem. */
export const writeRoutes: readonly Route[] = [
  { method: 'PUT', path: ITEM, handle: putItem },
  { method: 'PUT', path: RANGE_ITEM, handle: putItem },
  { method: 'PATCH', path: ITEM, handle: patchItem },
  { method: 'PATCH', path: RANGE_ITEM, handle: patchItem },
  { method: 'DELETE', path: ITEM, handle: deleteItem },
  { method: 'DELETE', path: RANGE_ITEM, handle: deleteItem },
  { method: 'PUT', path: QUERY_ITEM, handle: putItem },
  { method: 'PATCH', path: QUERY_ITEM, handle: patchItem },
  { method: 'DELETE', path: QUERY_ITEM, handle: deleteItem },
];

/** Served by the health function: no DynamoDB access at all. */
export const healthRoutes: readonly Route[] = [{ method: 'GET', path: '/health', handle: health }];

export const allRoutes: readonly Route[] = [...readRoutes, ...writeRoutes, ...healthRoutes];
