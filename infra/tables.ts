/**
 * Reads the CloudFormation of the parking table (infra/parking.yml), which the local stack creates
 * from what this module reads out of it (infra/local/create-tables.ts). The application's tables
 * are declared in tables.json instead (lib/tables.ts, infra/tables.cjs).
 */
import type { AttributeDefinition, BillingMode, KeySchemaElement, StreamViewType } from '@aws-sdk/client-dynamodb';
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { fileURLToPath } from 'node:url';
import type { KeyAttribute, KeyType } from '../lib/tables.ts';

/** The parking table of the Streams consumer (lib/stream/parking.ts), declared apart from the application's. */
export const PARKING_TEMPLATE = fileURLToPath(new URL('./parking.yml', import.meta.url));

/**
 * How a TableName in the template starts: the serverless variable the deploy replaces with
 * `<service>-<stage>-` (TABLE_PREFIX of the functions is the same variable). What follows it is
 * the table's logical name.
 */
export const TABLE_NAME_PREFIX = '${self:custom.tablePrefix}';

/** A table as the template declares it, its name without the deploy's prefix. */
export interface TemplateTable {
  /** CloudFormation logical id (`UsersTable`). */
  readonly logicalId: string;
  /** Logical table name (`users`); the physical name is a prefix + this. */
  readonly name: string;
  readonly hashKey: KeyAttribute;
  readonly rangeKey: KeyAttribute | undefined;
  readonly billingMode: BillingMode;
  readonly streamViewType: StreamViewType | undefined;
  readonly pointInTimeRecovery: boolean;
}

export class TableTemplateError extends Error {
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = new.target.name;
  }
}

/**
 * CloudFormation's short-form intrinsics (`!Ref X`, `!GetAtt X.Y`, `!Sub …`), read as their long
 * forms, so a fragment may use either.
 */
const INTRINSICS = [
  'Base64',
  'Cidr',
  'FindInMap',
  'GetAtt',
  'GetAZs',
  'ImportValue',
  'Join',
  'Select',
  'Split',
  'Sub',
  'Transform',
  'And',
  'Equals',
  'If',
  'Not',
  'Or',
  'Condition',
  'Ref',
];

const CLOUDFORMATION_SCHEMA = yaml.DEFAULT_SCHEMA.extend(
  INTRINSICS.flatMap((name) => {
    const key = name === 'Ref' || name === 'Condition' ? name : `Fn::${name}`;
    return (['scalar', 'sequence', 'mapping'] as const).map(
      (kind) =>
        new yaml.Type(`!${name}`, {
          kind,
          construct: (data) => ({
            [key]:
              name === 'GetAtt' && typeof data === 'string' ? [data.slice(0, data.indexOf('.')), data.slice(data.indexOf('.') + 1)] : data,
          }),
        }),
    );
  }),
);

/** Parses a CloudFormation or serverless YAML file (short-form intrinsics included). */
export function loadYaml(path: string): unknown {
  return yaml.load(readFileSync(path, 'utf8'), { schema: CLOUDFORMATION_SCHEMA, filename: path });
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function literal(where: string, v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') {
    throw new TableTemplateError(where, `${what} must be a literal string (the local stack reads it), got ${JSON.stringify(v)}`);
  }
  return v;
}

function readTable(logicalId: string, resource: Obj): TemplateTable {
  const where = `Resources.${logicalId}`;
  const p = resource.Properties;
  if (!isObj(p)) throw new TableTemplateError(where, 'has no Properties');

  const tableName = literal(`${where}.TableName`, p.TableName, 'TableName');
  if (!tableName.startsWith(TABLE_NAME_PREFIX) || tableName.length === TABLE_NAME_PREFIX.length) {
    throw new TableTemplateError(`${where}.TableName`, `must be '${TABLE_NAME_PREFIX}<logical name>', got '${tableName}'`);
  }
  const name = tableName.slice(TABLE_NAME_PREFIX.length);

  const types = new Map<string, KeyType>();
  if (!Array.isArray(p.AttributeDefinitions)) throw new TableTemplateError(where, 'has no AttributeDefinitions list');
  for (const [i, d] of p.AttributeDefinitions.entries()) {
    const at = `${where}.AttributeDefinitions[${i}]`;
    if (!isObj(d)) throw new TableTemplateError(at, 'must be a mapping');
    const attr = literal(at, d.AttributeName, 'AttributeName');
    const type = literal(at, d.AttributeType, 'AttributeType');
    if (type !== 'S' && type !== 'N' && type !== 'B') throw new TableTemplateError(at, `AttributeType must be S, N or B, got '${type}'`);
    types.set(attr, type);
  }

  if (!Array.isArray(p.KeySchema) || p.KeySchema.length < 1 || p.KeySchema.length > 2) {
    throw new TableTemplateError(where, 'KeySchema must list a HASH key and at most one RANGE key');
  }
  const keys = p.KeySchema.map((k: unknown, i: number) => {
    const at = `${where}.KeySchema[${i}]`;
    if (!isObj(k)) throw new TableTemplateError(at, 'must be a mapping');
    const attr = literal(at, k.AttributeName, 'AttributeName');
    const type = types.get(attr);
    if (type === undefined) throw new TableTemplateError(at, `'${attr}' has no AttributeDefinition`);
    const expected = i === 0 ? 'HASH' : 'RANGE';
    if (k.KeyType !== expected) throw new TableTemplateError(at, `KeyType must be ${expected}, got ${JSON.stringify(k.KeyType)}`);
    return { name: attr, type };
  });
  // Only key attributes may be defined (DynamoDB rejects the rest); indexes are not supported here.
  if (types.size !== keys.length) throw new TableTemplateError(where, 'AttributeDefinitions must define exactly the key attributes');

  const billingMode = literal(`${where}.BillingMode`, p.BillingMode, 'BillingMode') as BillingMode;
  let streamViewType: StreamViewType | undefined;
  if (p.StreamSpecification !== undefined) {
    if (!isObj(p.StreamSpecification)) throw new TableTemplateError(`${where}.StreamSpecification`, 'must be a mapping');
    streamViewType = literal(`${where}.StreamSpecification`, p.StreamSpecification.StreamViewType, 'StreamViewType') as StreamViewType;
  }
  const pitr = p.PointInTimeRecoverySpecification;
  return Object.freeze({
    logicalId,
    name,
    hashKey: Object.freeze(keys[0] as KeyAttribute),
    rangeKey: keys[1] ? Object.freeze(keys[1]) : undefined,
    billingMode,
    streamViewType,
    pointInTimeRecovery: isObj(pitr) && pitr.PointInTimeRecoveryEnabled === true,
  });
}

/** Every AWS::DynamoDB::Table of the template, in the order it declares them. */
export function readTableTemplate(path: string): TemplateTable[] {
  const doc = loadYaml(path);
  if (!isObj(doc) || !isObj(doc.Resources)) throw new TableTemplateError(path, 'has no Resources');
  const tables = Object.entries(doc.Resources)
    .filter(([, r]) => isObj(r) && r.Type === 'AWS::DynamoDB::Table')
    .map(([id, r]) => readTable(id, r as Obj));
  const seen = new Set<string>();
  for (const t of tables) {
    if (seen.has(t.name)) throw new TableTemplateError(path, `table '${t.name}' is declared twice`);
    seen.add(t.name);
  }
  return tables;
}

/** CreateTable input for a template table (DynamoDB Local: no point-in-time recovery there). */
export function templateCreateTableInput(table: TemplateTable, physicalName: string) {
  const keys = [table.hashKey, ...(table.rangeKey ? [table.rangeKey] : [])];
  return {
    TableName: physicalName,
    BillingMode: table.billingMode,
    KeySchema: keys.map((k, i): KeySchemaElement => ({ AttributeName: k.name, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
    AttributeDefinitions: keys.map((k): AttributeDefinition => ({ AttributeName: k.name, AttributeType: k.type })),
    ...(table.streamViewType ? { StreamSpecification: { StreamEnabled: true, StreamViewType: table.streamViewType } } : {}),
  };
}
