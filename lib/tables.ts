import { UnknownTableError, ValidationError } from './errors.ts';

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
}

export interface TableDeclaration {
  name: string;
  hashKey: KeyAttribute;
  rangeKey?: KeyAttribute;
  ttlSeconds?: number;
  cached?: boolean;
  versionAttribute?: string;
}

export const DEFAULT_VERSION_ATTRIBUTE = '_version';

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
  return Object.freeze({
    name: decl.name,
    hashKey: Object.freeze({ ...decl.hashKey }),
    rangeKey: decl.rangeKey ? Object.freeze({ ...decl.rangeKey }) : undefined,
    ttlSeconds: decl.ttlSeconds,
    cached: decl.cached ?? true,
    versionAttribute,
  });
}

/** The example application's tables; the local stack and the deploy create exactly these. */
export const exampleTables: readonly TableDefinition[] = [
  defineTable({ name: 'users', hashKey: { name: 'userId', type: 'S' } }),
  defineTable({ name: 'orders', hashKey: { name: 'customerId', type: 'S' }, rangeKey: { name: 'orderId', type: 'S' } }),
  defineTable({ name: 'readings', hashKey: { name: 'sensorId', type: 'S' }, rangeKey: { name: 'ts', type: 'N' } }),
];

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
