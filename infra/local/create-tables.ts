import {
  CreateTableCommand,
  DescribeTableCommand,
  ResourceInUseException,
  type CreateTableCommandInput,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import type { TableDefinition } from '../../lib/tables.ts';
import { PARKING_TABLE_NAME } from '../../lib/stream/parking.ts';
import { PARKING_TEMPLATE, readTableTemplate, templateCreateTableInput } from '../tables.ts';

/**
 * CreateTable input for a declared table (tables.json, or a test's own defineTable), as the deploy
 * creates it (infra/tables.cjs): on-demand, with a stream of the table's view type. DynamoDB Local
 * has no point-in-time recovery.
 */
export function createTableInput(table: TableDefinition, physicalName: string): CreateTableCommandInput {
  return templateCreateTableInput(
    {
      logicalId: '',
      name: table.name,
      hashKey: table.hashKey,
      rangeKey: table.rangeKey,
      billingMode: 'PAY_PER_REQUEST',
      streamViewType: table.streamViewType,
      pointInTimeRecovery: true,
    },
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
