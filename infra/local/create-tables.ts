import {
  CreateTableCommand,
  DescribeTableCommand,
  ResourceInUseException,
  type CreateTableCommandInput,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import type { KeyAttribute, TableDefinition } from '../../lib/tables.ts';
import { PARKING_TABLE_NAME } from '../../lib/stream/parking.ts';
import { PARKING_TEMPLATE, readTableTemplate, templateCreateTableInput, type TemplateTable } from '../tables.ts';

/** infra/tables.yml, read once: the tables the deploy creates. */
let template: readonly TemplateTable[] | undefined;
function templateTables(): readonly TemplateTable[] {
  template ??= readTableTemplate();
  return template;
}

function sameKey(a: KeyAttribute | undefined, b: KeyAttribute | undefined): boolean {
  return a?.name === b?.name && a?.type === b?.type;
}

function describeKeys(t: { hashKey: KeyAttribute; rangeKey?: KeyAttribute | undefined }): string {
  return [t.hashKey, t.rangeKey]
    .filter((k) => k !== undefined)
    .map((k) => `${k.name} ${k.type}`)
    .join(', ');
}

/**
 * CreateTable input for a declared table, as infra/tables.yml (the deploy) declares it: on-demand,
 * with the stream the consumer reads. A table the template does not declare (a test's own) is
 * created like the template's tables, with the settings they all share.
 */
export function createTableInput(table: TableDefinition, physicalName: string) {
  const tables = templateTables();
  const deployed = tables.find((t) => t.name === table.name);
  if (deployed !== undefined) {
    if (!sameKey(deployed.hashKey, table.hashKey) || !sameKey(deployed.rangeKey, table.rangeKey)) {
      throw new Error(
        `table '${table.name}': infra/tables.yml declares keys (${describeKeys(deployed)}), the library (${describeKeys(table)})`,
      );
    }
    return templateCreateTableInput(deployed, physicalName);
  }
  const [first, ...rest] = tables;
  if (first === undefined || rest.some((t) => t.billingMode !== first.billingMode || t.streamViewType !== first.streamViewType)) {
    throw new Error(`table '${table.name}' is not in infra/tables.yml, and its tables share no settings to copy`);
  }
  return templateCreateTableInput(
    { ...first, logicalId: '', name: table.name, hashKey: table.hashKey, rangeKey: table.rangeKey },
    physicalName,
  );
}

/** CreateTable input for the parking table, as infra/parking.yml declares it. */
export function parkingTableInput(physicalName: string) {
  const parking = readTableTemplate(PARKING_TEMPLATE).find((t) => t.name === PARKING_TABLE_NAME);
  if (parking === undefined) throw new Error(`infra/parking.yml declares no table '${PARKING_TABLE_NAME}'`);
  return templateCreateTableInput(parking, physicalName);
}

/** Creates the tables that do not exist yet and waits until they are active. */
export async function createTables(client: DynamoDBClient, tables: readonly TableDefinition[], prefix: string): Promise<void> {
  await createAndWait(
    client,
    tables.map((t) => createTableInput(t, prefix + t.name)),
  );
}

/** Creates the parking table (prefix + PARKING_TABLE_NAME) unless it exists; returns its name. */
export async function createParkingTable(client: DynamoDBClient, prefix: string): Promise<string> {
  const name = prefix + PARKING_TABLE_NAME;
  await createAndWait(client, [parkingTableInput(name)]);
  return name;
}

async function createAndWait(client: DynamoDBClient, inputs: CreateTableCommandInput[]): Promise<void> {
  for (const input of inputs) {
    try {
      await client.send(new CreateTableCommand(input));
    } catch (err) {
      if (!(err instanceof ResourceInUseException)) throw err;
    }
  }
  for (const { TableName: name } of inputs) {
    for (let i = 0; ; i++) {
      const d = await client.send(new DescribeTableCommand({ TableName: name }));
      if (d.Table?.TableStatus === 'ACTIVE') break;
      if (i > 100) throw new Error(`table ${name} did not become active`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
