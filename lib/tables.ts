import { UnknownTableError, ValidationError } from './errors.ts';
// The one file a team edits to declare its tables (README, "Your tables"). Imported, not read: esbuild
// inlines JSON into each Lambda bundle at package time, so no function reads a file at run time, and
// the deploy's CloudFormation (infra/tables.cjs) and the local stack read the same file.
import tablesFile from '../tables.json' with { type: 'json' };

export type KeyType = 'S' | 'N' | 'B';

export interface KeyAttribute {
  readonly name: string;
  readonly type: KeyType;
}

/** A table as the library sees it: declared once, everything else derived from it. */
export interface TableDefinition {
  /** Logical name, used by code and URLs. The physical name may carry a stage prefix. */
  readonly name: string;
  readonly hashKey: KeyAttribute;
  readonly rangeKey: KeyAttribute | undefined;
  /** Entry lifetime for this table; falls back to CACHE_TTL_SECONDS. */
  readonly ttlSeconds: number | undefined;
  /** false: reads and writes go straight to DynamoDB (the original design's NullCache: ARCHITECTURE.md). */
  readonly cached: boolean;
  /**
   * Number attribute DynamoDB increments atomically in every write through the library; it is the
   * item's version (ETag, `ifVersion`) and is reserved: callers cannot write it.
   */
  readonly versionAttribute: string;
  /**
   * What the table's stream carries (the deploy and the local stack create it so). The consumer
   * reads only the keys, which every view type holds (lib/stream/consumer.ts).
   */
  readonly streamViewType: StreamViewType;
  /**
   * The team's word that every writer of the table goes through the cache under the strict policy
   * (no out-of-band writer, no writer under `available`): only then is an entry as fresh as a
   * consistent read of DynamoDB, and the drop-in client may answer `ConsistentRead` from the cache.
   */
  readonly allWritesThroughStrictCache: boolean;
}

export type StreamViewType = 'KEYS_ONLY' | 'NEW_IMAGE' | 'OLD_IMAGE' | 'NEW_AND_OLD_IMAGES';

export const STREAM_VIEW_TYPES: readonly StreamViewType[] = ['KEYS_ONLY', 'NEW_IMAGE', 'OLD_IMAGE', 'NEW_AND_OLD_IMAGES'];

export interface TableDeclaration {
  name: string;
  hashKey: KeyAttribute;
  rangeKey?: KeyAttribute;
  ttlSeconds?: number;
  cached?: boolean;
  versionAttribute?: string;
  streamViewType?: StreamViewType;
  allWritesThroughStrictCache?: boolean;
}

export const DEFAULT_VERSION_ATTRIBUTE = '_version';
/**
 * New images: the consumer leaves an entry that already holds a record's change (its version and content
 * digest), so the library's own writes keep what they stored (lib/stream/recorded.ts). Not
 * NEW_AND_OLD_IMAGES: the old image is never read and would double a MODIFY's payload. KEYS_ONLY still
 * works: every record then invalidates (README, "Stream view types").
 */
export const DEFAULT_STREAM_VIEW_TYPE: StreamViewType = 'NEW_IMAGE';

const TABLE_NAME = /^[A-Za-z0-9_.-]{3,200}$/;

export function defineTable(decl: TableDeclaration): TableDefinition {
  if (!TABLE_NAME.test(decl.name)) {
    throw new ValidationError('table.name', `'${decl.name}' must be 3-200 characters of letters, digits, _ . -`);
  }
  for (const [field, key] of [
    ['hashKey', decl.hashKey],
    ['rangeKey', decl.rangeKey],
  ] as const) {
    if (key === undefined) continue;
    if (!key.name) throw new ValidationError(`${decl.name}.${field}`, 'needs a name');
    if (!['S', 'N', 'B'].includes(key.type)) {
      throw new ValidationError(`${decl.name}.${field}`, `type must be S, N or B, got '${key.type}'`);
    }
  }
  const versionAttribute = decl.versionAttribute ?? DEFAULT_VERSION_ATTRIBUTE;
  if (versionAttribute === decl.hashKey.name || versionAttribute === decl.rangeKey?.name) {
    throw new ValidationError(`${decl.name}.versionAttribute`, 'must differ from the key attributes');
  }
  if (decl.ttlSeconds !== undefined && (!Number.isInteger(decl.ttlSeconds) || decl.ttlSeconds < 1)) {
    throw new ValidationError(`${decl.name}.ttlSeconds`, 'must be a positive whole number');
  }
  const streamViewType = decl.streamViewType ?? DEFAULT_STREAM_VIEW_TYPE;
  if (!STREAM_VIEW_TYPES.includes(streamViewType)) {
    throw new ValidationError(`${decl.name}.streamViewType`, `must be one of ${STREAM_VIEW_TYPES.join(', ')}, got '${streamViewType}'`);
  }
  for (const flag of ['cached', 'allWritesThroughStrictCache'] as const) {
    if (decl[flag] !== undefined && typeof decl[flag] !== 'boolean') {
      throw new ValidationError(`${decl.name}.${flag}`, `must be true or false, got ${JSON.stringify(decl[flag])}`);
    }
  }
  return Object.freeze({
    name: decl.name,
    hashKey: Object.freeze({ ...decl.hashKey }),
    rangeKey: decl.rangeKey ? Object.freeze({ ...decl.rangeKey }) : undefined,
    ttlSeconds: decl.ttlSeconds,
    cached: decl.cached ?? true,
    versionAttribute,
    streamViewType,
    allWritesThroughStrictCache: decl.allWritesThroughStrictCache ?? false,
  });
}

const DECLARATION_FIELDS = new Set([
  'name',
  'hashKey',
  'rangeKey',
  'ttlSeconds',
  'cached',
  'versionAttribute',
  'streamViewType',
  'allWritesThroughStrictCache',
]);

/**
 * The tables of a tables.json document (`{ "tables": [ … ] }`), each checked by defineTable. An
 * unknown field is refused by name: a misspelt `ttlSecond` must not silently fall back to the default.
 */
export function tablesFromJson(doc: unknown, where = 'tables.json'): TableDefinition[] {
  const list = typeof doc === 'object' && doc !== null ? (doc as { tables?: unknown }).tables : undefined;
  if (!Array.isArray(list) || list.length === 0) throw new ValidationError(where, 'must be { "tables": [ … ] } with one table or more');
  const tables = list.map((t: unknown, i) => {
    if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new ValidationError(`${where}: tables[${i}]`, 'must be an object');
    const unknown = Object.keys(t).filter((k) => !DECLARATION_FIELDS.has(k));
    if (unknown.length > 0) {
      throw new ValidationError(`${where}: tables[${i}]`, `unknown field ${unknown.map((k) => `'${k}'`).join(', ')}`);
    }
    const decl = t as TableDeclaration;
    if (typeof decl.hashKey !== 'object' || decl.hashKey === null)
      throw new ValidationError(`${where}: tables[${i}].hashKey`, 'is required');
    return defineTable(decl);
  });
  new TableRegistry(tables); // refuses a name declared twice
  return tables;
}

/** Logical name ⇄ definition ⇄ physical (stage-prefixed) name. */
export class TableRegistry {
  readonly prefix: string;
  private readonly byName = new Map<string, TableDefinition>();

  constructor(tables: readonly TableDefinition[], prefix = '') {
    this.prefix = prefix;
    for (const t of tables) {
      if (this.byName.has(t.name)) throw new ValidationError('tables', `table '${t.name}' is declared twice`);
      this.byName.set(t.name, t);
    }
  }

  get(name: string): TableDefinition {
    const t = this.byName.get(name);
    if (!t) throw new UnknownTableError(name);
    return t;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  all(): TableDefinition[] {
    return [...this.byName.values()];
  }

  physicalName(table: TableDefinition): string {
    return this.prefix + table.name;
  }

  /** The definition behind a physical name (e.g. from a stream record's ARN), if it is ours. */
  fromPhysicalName(physical: string): TableDefinition | undefined {
    if (!physical.startsWith(this.prefix)) return undefined;
    return this.byName.get(physical.slice(this.prefix.length));
  }
}

// After TableRegistry: tablesFromJson uses it.
/** The tables of tables.json: what the library serves by default, and what the deploy and the local stack create. */
export const declaredTables: readonly TableDefinition[] = Object.freeze(tablesFromJson(tablesFile));

/** @deprecated The same as declaredTables (the example application's tables were declared here before tables.json). */
export const exampleTables: readonly TableDefinition[] = declaredTables;
