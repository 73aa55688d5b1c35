import { CreateTableCommand, DescribeTableCommand, ResourceInUseException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { TableDefinition } from '../../lib/tables.ts';

/** CreateTable input for a declared table: on-demand, streams on (the consumer needs them). */
export function createTableInput(table: TableDefinition, physicalName: string) {
  const keys = [table.hashKey, ...(table.rangeKey ? [table.rangeKey] : [])];
  return {
    TableName: physicalName,
    BillingMode: 'PAY_PER_REQUEST' as const,
    KeySchema: keys.map((k, i) => ({ AttributeName: k.name, KeyType: i === 0 ? ('HASH' as const) : ('RANGE' as const) })),
    AttributeDefinitions: keys.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
    StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_AND_OLD_IMAGES' as const },
  };
}

/** Creates the tables that do not exist yet and waits until they are active. */
export async function createTables(client: DynamoDBClient, tables: readonly TableDefinition[], prefix: string): Promise<void> {
  for (const t of tables) {
    try {
      await client.send(new CreateTableCommand(createTableInput(t, prefix + t.name)));
    } catch (err) {
      if (!(err instanceof ResourceInUseException)) throw err;
    }
  }
  for (const t of tables) {
    for (let i = 0; ; i++) {
      const d = await client.send(new DescribeTableCommand({ TableName: prefix + t.name }));
      if (d.Table?.TableStatus === 'ACTIVE') break;
      if (i > 100) throw new Error(`table ${prefix + t.name} did not become active`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
