import type { AttributeValue, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { entryTtlSeconds, fenceTimeMs, loadConfig, mapWaitMs, type Config } from './config.ts';
import {
  decodeEntry,
  encodeEntry,
  entryFromPieces,
  entryOf,
  entryPieces,
  sameSpelling,
  spelledEntryOf,
  fromAttributes,
  hasNestedNumbers,
  normalizeAttributes,
  toAttributes,
  type Item,
} from './codec.ts';
import { UnreadableEntryError } from './codec.ts';
import { CacheLibraryError, CacheUnavailableError, ItemTooLargeError, UnknownTableError, ValidationError } from './errors.ts';
import { itemSize, MAX_ITEM_BYTES, numberSize } from './item-size.ts';
import { logger, loggedKey } from './log.ts';
import { CacheMetrics } from './metrics.ts';
import { checkKeyValue, checkWellFormedText, isWellFormedText, resolveKey, type ItemKey, type ResolvedKey } from './keys.ts';
import { declaredTables, TableRegistry, type TableDefinition } from './tables.ts';
import { ItemStore, versionOf, type Attributes, type WriteOptions } from './store.ts';
import { ShardMap, nodeSettings } from './cache/shards.ts';
import { slotOf } from './cache/slots.ts';
import type { CacheNode, NodeHealth } from './cache/node.ts';
import {
  ABSENT,
  absentEntry,
  CacheProtocol,
  type CacheEntry,
  type CommitContext,
  type CommitOutcome,
  type InvalidationOutcome,
  type ProtocolHooks,
  type ReadSource,
  type RecordedState,
} from './cache/protocol.ts';
import { itemDigest, spelledItemDigest } from './digest.ts';

export interface ItemCacheOptions {
  /** Settings; default: built from the environment. */
  config?: Config;
  /** Table declarations; default: the ones of tables.json (declaredTables). */
  tables?: readonly TableDefinition[];
  /** @internal Test seams awaited at each step of the protocol (races tests). */
  hooks?: ProtocolHooks;
  /** A DynamoDB client to use instead of one built from the settings (tests inject faults with it). */
  dynamoClient?: DynamoDBClient;
  /** @internal Test seam for the node state machines' clock. */
  clock?: () => number;
}

export interface ReadResult {
  /** The item without the version attribute; undefined when there is none. */
  item: Item | undefined;
  version: number | undefined;
  cache: ReadSource;
}

export interface WriteResult {
  item: Item;
  version: number;
}

export interface BatchGetResult {
  items: Item[];
  missing: ItemKey[];
  /** Per requested key, in request order: where its answer came from. */
  sources: ReadSource[];
}

export interface UpdateChanges {
  /** Top-level attributes to set. */
  set?: Item;
  /** Top-level attributes to remove. */
  remove?: string[];
}

export const MAX_BATCH_KEYS = 100;

/**
 * The library's entry point: reads and writes DynamoDB items by key through the Redis cache.
 * Build it once at module scope (clients, scripts, shard map and node health live in it and survive
 * warm invocations) and call it inside the handler.
 */
export class ItemCache {
  /** The settings it was built from (read-only: the handlers read their own limits here). */
  readonly config: Config;
  /** The declared tables, by logical and physical name. */
  readonly tables: TableRegistry;
  /** @internal DynamoDB access, for the stream functions of this library (lib/stream/). */
  readonly store: ItemStore;
  /** @internal The nodes and the shard map, for the stream functions, the bench and the tests. */
  readonly shards: ShardMap;
  /** What this container counted since the handler last published it (lib/metrics.ts). */
  readonly metrics = new CacheMetrics();
  private readonly protocol: CacheProtocol;

  constructor(options: ItemCacheOptions = {}) {
    this.config = options.config ?? loadConfig();
    this.tables = new TableRegistry(options.tables ?? declaredTables, this.config.store.tablePrefix);
    this.store = new ItemStore(this.config.store, this.tables, options.dynamoClient);
    // A write's DynamoDB calls (a put may retry its version guess and read the item back) are all over
    // by its commit deadline (the store stops the SDK there); the fence raised before the commit
    // outlasts it by the begin's own travel (at most the command timeout) and a margin. A new epoch
    // settles for the same time: the longest a writer from before it can still be in flight.
    const commitMs = this.config.store.deadlineMs;
    const fenceMs = fenceTimeMs(this.config);
    // Shards mode: the live shard maps (lib/cache/maps.ts), registered and read every refresh period.
    this.shards = new ShardMap(
      this.config.cache,
      { ...nodeSettings(this.config.cache, options.clock), settleMs: fenceMs, metrics: this.metrics },
      {
        refreshMs: this.config.cache.mapRefreshSeconds * 1000,
        expiryMs: this.config.cache.mapExpirySeconds * 1000,
        waitMs: mapWaitMs(this.config),
      },
    );
    this.protocol = new CacheProtocol({
      commandTimeoutMs: this.config.cache.commandTimeoutMs,
      leaseMs: this.config.cache.leaseMs,
      commitMs,
      fenceMs,
      writePolicy: this.config.cache.writePolicy,
      hooks: options.hooks,
      metrics: this.metrics,
    });
  }

  /**
   * A declared table by its logical name. Throws UnknownTableError.
   * @example
   * const orders = cache.table('orders'); // orders.hashKey.name === 'customerId'
   */
  table(name: string): TableDefinition {
    return this.tables.get(name);
  }

  /**
   * Checks a key against its table and derives its cache names (G6). Throws ValidationError.
   * @example
   * const rk = cache.resolve('users', { userId: 'ada' }); // rk.redisKey, rk.shard
   */
  resolve(table: string | TableDefinition, key: unknown, field = 'key'): ResolvedKey {
    const def = typeof table === 'string' ? this.tables.get(table) : table;
    return resolveKey(def, this.tables.physicalName(def), key, field);
  }

  /**
   * @internal For the Streams consumer and the replayer (lib/stream/).
   * The key of a stream record's item: its table's physical name and its key attributes (binary as
   * bytes). Throws when the table is not declared or the key does not fit it.
   */
  keyFromStream(physicalTable: string, keys: Attributes): ResolvedKey {
    const def = this.tables.fromPhysicalName(physicalTable);
    if (def === undefined) throw new UnknownTableError(physicalTable);
    return this.resolve(def, fromAttributes(keys), 'Keys');
  }

  /** @internal The node holding an item's entry; undefined when the table or the cache is off. */
  nodeFor(rk: ResolvedKey): CacheNode | undefined {
    return rk.table.cached ? this.shards.nodeFor(rk.shard, rk.redisKey) : undefined;
  }

  /** Cluster mode: the item is cached but its slot has no owner in the topology (cluster.ts `unowned`). */
  private unowned(rk: ResolvedKey): boolean {
    return rk.table.cached && this.shards.unowned(rk.redisKey);
  }

  /**
   * @internal The nodes a write or an invalidation of an item must reach: its node under this
   * container's map and under every other live map (lib/cache/maps.ts), after taking the view again
   * when it is older than the refresh period.
   */
  async ownersFor(rk: ResolvedKey): Promise<{ node: CacheNode | undefined; others: CacheNode[] }> {
    const node = this.nodeFor(rk);
    if (node === undefined) return { node, others: [] };
    await this.shards.view?.fresh();
    return { node, others: this.shards.othersFor(rk.shard, rk.redisKey) };
  }

  /**
   * A write of `rk` inside the write protocol, fenced on its node under every live shard map
   * (ownersFor): what put, update, delete and the drop-in's writes share.
   */
  private async writeThrough<T>(rk: ResolvedKey, commit: (context: CommitContext) => Promise<CommitOutcome<T>>): Promise<T> {
    const { node, others } = await this.ownersFor(rk);
    if (node === undefined && this.unowned(rk)) {
      // Cluster mode, a slot no primary owns: nothing can be fenced or invalidated, and the entry its
      // last owner holds is trusted again once the slot is back there. strict refuses before anything
      // is committed (R6); available commits, and the key's stream record, parked while the slot has
      // no owner (invalidate, below), repairs it (G2).
      if (this.config.cache.writePolicy === 'strict') {
        this.metrics.count('WriteRefused');
        throw new CacheUnavailableError("no cache node owns this key's cluster slot; nothing was written");
      }
      logger.error('CACHE_DIRTY_DATA', {
        cacheNode: '',
        itemKey: loggedKey(rk.redisKey, this.config.cache.logKeys),
        reason: "no cache node owns the key's cluster slot",
      });
    }
    return this.protocol.write(node, rk.redisKey, this.ttlMs(rk.table), commit, others);
  }

  private ttlMs(table: TableDefinition): number {
    return entryTtlSeconds(this.config, table) * 1000;
  }

  /**
   * Reads an item by key: from the cache when it holds the item's latest acknowledged version (G1),
   * else from DynamoDB (strongly consistent), filling the cache. A failing node costs at most the
   * command timeout (G3). Throws ValidationError, UnknownTableError, StoreUnavailableError.
   * @example
   * const { item, version, cache: source } = await cache.get('users', { userId: 'ada' });
   * if (item === undefined) console.log('no such user');
   */
  get(table: string, key: unknown): Promise<ReadResult> {
    let rk: ResolvedKey;
    try {
      rk = this.resolve(table, key);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.readAs(rk, undefined, asIs);
  }

  /**
   * @internal get() of a resolved key, for the drop-in client (lib/drop-in/client.ts): its answer is
   * made from the result (`answer`, which may throw) in the read's own continuation, and `recover`
   * answers a failed read instead of rejecting, so a hit through the drop-in pays no promise of its
   * own. `context` is handed to both: callers pass functions made once, not a closure per read.
   */
  async readAs<C, T>(
    rk: ResolvedKey,
    context: C,
    answer: (result: ReadResult, context: C) => T,
    recover?: (err: unknown, context: C) => T | Promise<T>,
  ): Promise<T> {
    let result: ReadResult;
    try {
      const viewing = this.shards.view?.beforeRead();
      if (viewing !== undefined) await viewing;
      const { entry, source } = await this.protocol.read(this.nodeFor(rk), rk.redisKey, this.ttlMs(rk.table), async () =>
        toEntry(rk.table, await this.store.get(rk)),
      );
      result = this.readResult(rk, entry, source) ?? (await this.repairUnreadable(rk));
    } catch (err) {
      if (recover === undefined) throw err;
      return recover(err, context);
    }
    this.countRead(result.cache);
    return answer(result, context);
  }

  private countRead(source: ReadSource): void {
    this.metrics.count(source === 'hit' ? 'ReadHit' : source === 'miss' ? 'ReadMiss' : 'ReadBypass');
  }

  /**
   * Decodes an entry (synchronously: the hit path). One the cache handed back that does not decode (a faulty or tampered node) is
   * dropped and the item read from DynamoDB: a bad node never fails a request. decodeEntry checks the entry as strictly as a
   * request body (numbers, depth, types), so nothing unreadable reaches the caller to fail later, outside this guard.
   */
  private readResult(rk: ResolvedKey, entry: CacheEntry, source: ReadSource): ReadResult | undefined {
    try {
      return toReadResult(rk.table, entry, source);
    } catch (err) {
      if (source !== 'hit') throw err;
      // A fixed reason, never the error's message: a parser's message quotes the entry's bytes.
      const reason = err instanceof UnreadableEntryError ? err.reason : `unexpected ${err instanceof Error ? err.name : typeof err}`;
      logger.error('CACHE_ENTRY_UNREADABLE', { itemKey: loggedKey(rk.redisKey, this.config.cache.logKeys), reason });
      return undefined;
    }
  }

  private async repairUnreadable(rk: ResolvedKey): Promise<ReadResult> {
    await this.invalidate(rk).catch(() => undefined);
    return toReadResult(rk.table, toEntry(rk.table, await this.store.get(rk)), 'bypass');
  }

  /**
   * Reads up to 100 items of one table at once: hits from the cache, the rest in one consistent
   * BatchGetItem. Keys that name no item come back in `missing`.
   * @example
   * const { items, missing } = await cache.batchGet('users', [{ userId: 'ada' }, { userId: 'bob' }]);
   */
  async batchGet(table: string, keys: unknown): Promise<BatchGetResult> {
    const def = this.tables.get(table);
    if (!Array.isArray(keys)) throw new ValidationError('keys', 'must be an array of keys');
    if (keys.length > MAX_BATCH_KEYS) throw new ValidationError('keys', `at most ${MAX_BATCH_KEYS} keys, got ${keys.length}`);
    const rks = keys.map((k, i) => this.resolve(def, k, `keys[${i}]`));
    const viewing = this.shards.view?.beforeRead();
    if (viewing !== undefined) await viewing;
    const outcomes = await this.protocol.readMany(
      rks.map((rk) => ({ node: this.nodeFor(rk), key: rk.redisKey })),
      this.ttlMs(def),
      async (indexes) =>
        (
          await this.store.getMany(
            def,
            indexes.map((i) => rks[i] as ResolvedKey),
          )
        ).map((av) => toEntry(def, av)),
    );
    const items: Item[] = [];
    const missing: ItemKey[] = [];
    const results = await Promise.all(
      outcomes.map((o, i) => this.readResult(rks[i] as ResolvedKey, o.entry, o.source) ?? this.repairUnreadable(rks[i] as ResolvedKey)),
    );
    results.forEach((r, i) => {
      this.countRead(r.cache);
      if (r.item === undefined) missing.push((rks[i] as ResolvedKey).key);
      else items.push(r.item);
    });
    return { items, missing, sources: results.map((r) => r.cache) };
  }

  /**
   * Replaces an item (its key is taken from it) and stores it in the cache (write-through). With
   * `ifVersion`, only if the item is at that version; with `ifExists`, only if it exists
   * (VersionMismatchError otherwise, nothing written, the cache unchanged).
   * @example
   * const { version } = await cache.put('orders', { customerId: 'c1', orderId: 'o1', total: 12 });
   * await cache.put('orders', { customerId: 'c1', orderId: 'o1', total: 13 }, { ifVersion: version });
   */
  async put(table: string, item: unknown, options: WriteOptions = {}): Promise<WriteResult> {
    const def = this.tables.get(table);
    const rk = this.resolve(def, item, 'item');
    const attrs = checkAttributes(def, item, 'item', false);
    checkIfVersion(options);
    const size = checkItemSize(def, attrs);
    return this.writeThrough(rk, async ({ hint, deadline }) => {
      // `written` is checkAttributes' output, every number already in DynamoDB's spelling: its
      // digest takes them as they are (issue 18: thousands of numbers), and a read-back of our own
      // version is the same item, hence the same digest. A large item's digest is made while
      // DynamoDB stores it: of the first attempt's item, once its request is on its way (the SDK
      // sends it within the microtasks and next ticks before an immediate), kept if that attempt is
      // the one that wrote it.
      // So is the text of each of its attributes in the entry (entryPieces), for a read-back that
      // answers the item spelling for spelling as written (below).
      let first: Attributes | undefined;
      let early: string | undefined;
      let pieces: Map<string, string> | undefined;
      const sending = size < EARLY_DIGEST_BYTES ? undefined : (item: Attributes) => void (first ??= item);
      const putting = this.store.put(rk, attrs, { ...options, hint, deadline, sending });
      if (first !== undefined) {
        putting.catch(() => undefined); // awaited below; not unhandled while the digest is made
        await new Promise<void>((resolve) => setImmediate(resolve));
        early = spelledItemDigest(first);
        pieces = entryPieces(first, def.versionAttribute);
      }
      const written = await putting;
      const ours = written === first;
      const digest = ours && early !== undefined ? early : spelledItemDigest(written);
      if (!hasNestedNumbers(written)) {
        if (ours && pieces !== undefined) return spelledOutcome(def, written, pieces, digest);
        return writeOutcome(def, written, digest);
      }
      // DynamoDB's spelling of numbers inside maps and lists is its own: read the item back (inside
      // the fence) so the answer and the entry are exactly what later reads return.
      const stored = await this.store.get(rk, deadline);
      if (stored !== undefined && versionOf(def, stored) === versionOf(def, written)) {
        // Answered as written, every attribute (DynamoDB's order may differ): the entry from the
        // pieces, and an answer whose numbers are all DynamoDB's spelling (written's, toAttributes').
        if (ours && pieces !== undefined && sameAttributesSpelled(stored, written)) return spelledOutcome(def, stored, pieces, digest);
        return writeOutcome(def, stored, digest);
      }
      // Not ours (see ARCHITECTURE.md, "A put's answer after a delete and re-create"): no entry.
      return { result: entryOf(written, def.versionAttribute), entry: undefined };
    });
  }

  /**
   * Sets and removes top-level attributes of an existing item (ItemNotFoundError if there is none).
   * @example
   * await cache.update('orders', { customerId: 'c1', orderId: 'o1' }, { set: { total: 13 }, remove: ['note'] });
   */
  async update(table: string, key: unknown, changes: UpdateChanges, options: WriteOptions = {}): Promise<WriteResult> {
    const def = this.tables.get(table);
    const rk = this.resolve(def, key);
    if (typeof changes !== 'object' || changes === null) throw new ValidationError('changes', 'must be an object');
    const set = checkAttributes(def, changes.set ?? {}, 'set', true);
    const remove = changes.remove ?? [];
    if (!Array.isArray(remove) || remove.some((n) => typeof n !== 'string' || n === '')) {
      throw new ValidationError('remove', 'must be a list of attribute names');
    }
    for (const name of remove) {
      checkWritableName(def, name, 'remove', true);
      if (Object.hasOwn(changes.set ?? {}, name)) throw new ValidationError(attributeField('remove', name), 'is also being set');
    }
    checkIfVersion(options);
    // What is set, with the key, is already part of the item the update leaves.
    checkItemSize(def, { ...toAttributes(rk.key), ...set });
    return this.writeThrough(rk, async ({ deadline }) => {
      const av = await this.store.update(rk, set, [...new Set(remove)], { ...options, deadline });
      return writeOutcome(def, av);
    });
  }

  /**
   * Deletes an item; `deleted` says whether there was one. Later reads answer not-found (R8).
   * @example
   * const { deleted } = await cache.delete('orders', { customerId: 'c1', orderId: 'o1' });
   */
  async delete(table: string, key: unknown, options: WriteOptions = {}): Promise<{ deleted: boolean }> {
    const def = this.tables.get(table);
    const rk = this.resolve(def, key);
    checkIfVersion(options);
    return this.writeThrough(rk, async ({ deadline }) => {
      const old = await this.store.delete(rk, { ...options, deadline });
      return { result: { deleted: old !== undefined }, entry: absentEntry };
    });
  }

  /**
   * @internal For the drop-in client (lib/drop-in/client.ts): any DynamoDB write of the item at
   * `key`, made inside the write protocol (the writer's fence and invalidation: G1) as put, update
   * and delete are. `commit` makes the write, within the deadline it is given, and answers its
   * result and the item as DynamoDB now holds it: `image` (version included; `null`: no item;
   * `undefined`: not known, so the entry is dropped and the next read fills it), `exact` when the
   * image is DynamoDB's own answer rather than built by the caller (whose numbers inside maps and
   * lists may be spelt otherwise than DynamoDB spells them: such an image is dropped).
   */
  async writeItem<T>(
    table: TableDefinition,
    key: unknown,
    commit: (context: { hint: number | undefined; deadline: number }) => Promise<{
      result: T;
      image: Attributes | null | undefined;
      exact: boolean;
    }>,
  ): Promise<T> {
    const rk = this.resolve(table, key);
    return this.writeThrough(rk, async (context) => {
      const { result, image, exact } = await commit(context);
      if (image === null) return { result, entry: absentEntry };
      if (image === undefined || (!exact && hasNestedNumbers(image))) return { result, entry: undefined };
      try {
        return { result, entry: toEntry(table, exact ? image : normalizeAttributes(image)) };
      } catch {
        return { result, entry: undefined };
      }
    });
  }

  /**
   * One page of a partition (tables with a range key), in range-key order, straight from DynamoDB.
   * @example
   * const page = await cache.queryPartition('readings', 's1', { limit: 10 });
   * const next = await cache.queryPartition('readings', 's1', { limit: 10, cursor: page.next });
   */
  async queryPartition(
    table: string,
    hashValue: unknown,
    options: { limit?: number; cursor?: unknown } = {},
  ): Promise<{ items: Item[]; next: ItemKey | undefined }> {
    const def = this.tables.get(table);
    if (!def.rangeKey) throw new ValidationError('table', `'${table}' has no range key: read its items by key`);
    const limit = options.limit ?? MAX_BATCH_KEYS;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_BATCH_KEYS) {
      throw new ValidationError('limit', `must be a whole number from 1 to ${MAX_BATCH_KEYS}`);
    }
    const hash = checkKeyValue(def.hashKey, hashValue, `key.${def.hashKey.name}`);
    let start: Attributes | undefined;
    if (options.cursor !== undefined) {
      // A cursor is the last key of the previous page, and it must lie in this partition.
      const cursor = this.resolve(def, options.cursor, 'cursor');
      if (checkKeyValue(def.hashKey, cursor.key[def.hashKey.name], 'cursor').text !== hash.text) {
        throw new ValidationError('cursor', 'belongs to another partition');
      }
      start = toAttributes(cursor.key);
    }
    const page = await this.store.queryPartition(def, hash.value, limit, start);
    return {
      items: page.items.map((av) => fromAttributes(av, def.versionAttribute)),
      next: page.next ? (fromAttributes(page.next) as ItemKey) : undefined,
    };
  }

  /**
   * @internal For the Streams consumer, the replayer and the sweep (lib/stream/).
   * Drops an item's entry, on its node under every live shard map; told what a stream record says
   * the item now is, each keeps an entry that holds exactly that. Throws CacheUnavailableError when
   * one of those nodes cannot be reached.
   */
  async invalidate(rk: ResolvedKey, recorded?: RecordedState): Promise<InvalidationOutcome> {
    // Cluster mode: the other primaries are asked for keys of the slot, so a cold container learns who they are first.
    if (!(await this.shards.topologyLearnt())) {
      throw new CacheUnavailableError('the cluster topology is not known: the primaries that may hold keys of the slot cannot be asked');
    }
    const { node, others } = await this.ownersFor(rk);
    if (node === undefined && this.unowned(rk)) throw new CacheUnavailableError("no cache node owns this key's cluster slot");
    const slot = slotOf(rk.redisKey);
    const peers = node === undefined ? [] : this.shards.peersOf(node, slot);
    return this.protocol.invalidate(node, rk.redisKey, recorded, others, peers, (peer) => this.shards.heldNone(peer, slot));
  }

  /**
   * Each node's state as this container sees it (up, down, starting, settling).
   * @example
   * const down = cache.health().filter((n) => n.status === 'down');
   */
  health(): NodeHealth[] {
    return this.shards.nodes.map((n) => n.health());
  }

  /**
   * The same, after asking every node (PING, bounded by the command timeout).
   * @example
   * const nodes = await cache.checkHealth(); // what GET /health answers
   */
  async checkHealth(): Promise<NodeHealth[]> {
    await Promise.all(this.shards.nodes.map((n) => n.check()));
    return this.health();
  }

  /**
   * Closes the node connections and the DynamoDB client (tests, scripts; a Lambda container never does).
   * @example
   * await cache.close();
   */
  async close(): Promise<void> {
    await this.shards.close();
    this.store.client.destroy();
  }
}

/**
 * writeOutcome of `av`, whose every number is in DynamoDB's spelling and whose attributes are,
 * spelling for spelling, those `pieces` was made of (entryPieces), in any order.
 */
function spelledOutcome(
  table: TableDefinition,
  av: Attributes,
  pieces: ReadonlyMap<string, string>,
  digest: string,
): { result: WriteResult; entry: CacheEntry } {
  const { item, version } = spelledEntryOf(av, table.versionAttribute);
  return { result: { item, version }, entry: { data: entryFromPieces(av, pieces), version: String(versionOf(table, av)), digest } };
}

/** Every attribute of `stored` is `written`'s, spelling for spelling (sameSpelling), and no other. */
function sameAttributesSpelled(stored: Attributes, written: Attributes): boolean {
  let count = 0;
  for (const name in stored) {
    if (!sameSpelling(stored[name], written[name])) return false;
    count++;
  }
  return count === Object.keys(written).length;
}

/** `digest`: the item's digest when the caller has it (itemDigest of the same item). */
function toEntry(table: TableDefinition, av: Attributes | undefined, digest?: string): CacheEntry {
  if (av === undefined) return absentEntry;
  return { data: encodeEntry(av, table.versionAttribute), version: String(versionOf(table, av)), digest: digest ?? itemDigest(av) };
}

const asIs = <T>(x: T): T => x;

function toReadResult(table: TableDefinition, entry: CacheEntry, cache: ReadSource): ReadResult {
  if (entry.data === ABSENT) return { item: undefined, version: undefined, cache };
  const { item, version } = decodeEntry(entry.data, table.versionAttribute);
  return { item, version, cache };
}

/** A write's answer and its entry: the answer is what a read of the entry returns (entryOf; binary as plain Uint8Array). */
function writeOutcome(table: TableDefinition, av: Attributes, digest?: string): { result: WriteResult; entry: CacheEntry } {
  const entry = toEntry(table, av, digest);
  const { item, version } = entryOf(av, table.versionAttribute);
  return { result: { item, version }, entry };
}

/**
 * The longest top-level attribute name accepted, in UTF-8 bytes. DynamoDB allows names under 64 KB
 * (key and index attributes: 255), but DynamoDB Local fails on names over 50,000 bytes (measured: a
 * PutItem is an internal error; an UpdateItem is stored, and every later GetItem of the item fails),
 * so the library stops where every backend it runs on agrees.
 */
export const MAX_ATTRIBUTE_NAME_BYTES = 50_000;

/** `prefix.name` for errors, a long name shortened (the message must not echo 50 KB back). */
function attributeField(prefix: string, name: string): string {
  return `${prefix}.${name.length > 64 ? `${name.slice(0, 32)}…(${name.length} characters)` : name}`;
}

/** `field` names the attribute in errors: a prefix and the name, spelled only when one is thrown. */
function checkWritableName(table: TableDefinition, name: string, prefix: string, keysForbidden: boolean): void {
  // A lone surrogate has no UTF-8 spelling: two names could meet in one (G4, G6 for keys).
  if (!isWellFormedText(name)) checkWellFormedText(name, attributeField(prefix, name));
  // A UTF-16 unit is at most 3 UTF-8 bytes: only long names need counting.
  if (name.length * 3 > MAX_ATTRIBUTE_NAME_BYTES && Buffer.byteLength(name, 'utf8') > MAX_ATTRIBUTE_NAME_BYTES) {
    throw new ValidationError(attributeField(prefix, name), `attribute names are at most ${MAX_ATTRIBUTE_NAME_BYTES} bytes`);
  }
  if (name === table.versionAttribute) {
    throw new ValidationError(attributeField(prefix, name), `'${name}' is the table's version attribute, which only the library writes`);
  }
  if (keysForbidden && (name === table.hashKey.name || name === table.rangeKey?.name)) {
    throw new ValidationError(attributeField(prefix, name), `'${name}' is a key attribute and cannot change`);
  }
}

/**
 * Checks attribute names and that every value is one DynamoDB can store (toAttributes refuses
 * undefined, functions, NaN, unsafe integers, empty sets, numbers DynamoDB cannot hold); returns
 * them as attribute values, numbers in DynamoDB's spelling.
 */
function checkAttributes(table: TableDefinition, attrs: unknown, field: string, keysForbidden: boolean): Attributes {
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) {
    throw new ValidationError(field, 'must be an object of attributes');
  }
  for (const name of Object.keys(attrs)) {
    if (name === '') throw new ValidationError(field, 'attribute names must not be empty');
    checkWritableName(table, name, field, keysForbidden);
  }
  let av: Attributes;
  try {
    av = toAttributes(attrs as Item, field);
  } catch (err) {
    if (err instanceof CacheLibraryError) throw err;
    throw new ValidationError(field, err instanceof Error ? err.message : String(err));
  }
  for (const name in av) checkWellFormedValue(av[name] as AttributeValue, field, name);
  return av;
}

/**
 * DynamoDB's nesting limit: a top-level attribute holds at most 31 lists or maps one inside another
 * (measured on DynamoDB Local: 32 is refused, "Nesting Levels have exceeded supported limits").
 * Checked before the write, so such a request never reaches the cache (a rejected request changes
 * nothing: SECURITY.md).
 */
const MAX_NESTED_CONTAINERS = 31;

/**
 * Every string of a value (set members, nested map names included) must be well-formed UTF-16.
 * DynamoDB stores UTF-8, which has no spelling for a lone surrogate: what a deployed table makes of
 * one is not something to leave to chance (DynamoDB Local keeps it as sent), so it is refused and
 * every value written reads back as written (G4). Lists and maps nest at most MAX_NESTED_CONTAINERS.
 */
function checkWellFormedValue(v: AttributeValue, parent: string, step: string | number, containers = 0): void {
  if (v.S !== undefined) {
    if (!isWellFormedText(v.S)) checkWellFormedText(v.S, stepField(parent, step));
  } else if (v.SS !== undefined) {
    for (const s of v.SS) if (!isWellFormedText(s)) checkWellFormedText(s, stepField(parent, step));
  } else if (v.L !== undefined || v.M !== undefined) {
    const field = stepField(parent, step);
    if (containers + 1 > MAX_NESTED_CONTAINERS) {
      throw new ValidationError(field, `nests lists and maps deeper than the ${MAX_NESTED_CONTAINERS} levels DynamoDB accepts`);
    }
    if (v.L !== undefined) for (let i = 0; i < v.L.length; i++) checkWellFormedValue(v.L[i] as AttributeValue, field, i, containers + 1);
    else {
      for (const name in v.M) {
        if (!isWellFormedText(name)) checkWellFormedText(name, attributeField(field, name));
        checkWellFormedValue(v.M[name] as AttributeValue, field, name, containers + 1);
      }
    }
  }
}

/** `parent.name` (shortened as attributeField does) or `parent[i]`. */
function stepField(parent: string, step: string | number): string {
  return typeof step === 'number' ? `${parent}[${step}]` : attributeField(parent, step);
}

/**
 * Refuses, before the write and so before the cache's fence, an item DynamoDB would refuse for its
 * size (SECURITY.md, "item size"): `attrs` holds the key and is at most what the write leaves in
 * DynamoDB, and the version attribute the store adds is counted at its smallest value (1), so
 * nothing DynamoDB would store is refused. An item within a few bytes of the limit at a version of
 * several digits is refused by DynamoDB itself, a definite rejection that leaves the cache as it
 * was.
 */
function checkItemSize(table: TableDefinition, attrs: Attributes): number {
  const size = itemSize(attrs) + Buffer.byteLength(table.versionAttribute, 'utf8') + numberSize('1');
  if (size > MAX_ITEM_BYTES) {
    throw new ItemTooLargeError(`the item is ${size} bytes as DynamoDB counts them, over its limit of ${MAX_ITEM_BYTES} (400 KB)`, size);
  }
  return size;
}

/** From this size (DynamoDB's count) a put's digest is made while DynamoDB stores the item (ItemCache.put). */
const EARLY_DIGEST_BYTES = 64 * 1024;

function checkIfVersion(options: WriteOptions): void {
  const v = options.ifVersion;
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
    throw new ValidationError('ifVersion', `must be a whole number ≥ 0, got ${String(v)}`);
  }
  const exists = options.ifExists;
  if (exists !== undefined && typeof exists !== 'boolean') throw new ValidationError('ifExists', 'must be true or false');
  if (exists && v !== undefined) throw new ValidationError('ifExists', 'cannot be combined with ifVersion');
}

let shared: ItemCache | undefined;

/** The module-scope instance handlers use, built from the environment on first use. */
export function sharedItemCache(): ItemCache {
  shared ??= new ItemCache();
  return shared;
}
