import { CreateTableCommand, DescribeTableCommand, ResourceInUseException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KeyAttribute, TableDefinition } from '../../lib/tables.ts';
import { readTableTemplate, templateCreateTableInput, type TemplateTable } from '../tables.ts';

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
  return [t.hashKey, t.rangeKey].filter((k) => k !== undefined).map((k) => `${k.name} ${k.type}`).join(', ');
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
  return templateCreateTableInput({ ...first, logicalId: '', name: table.name, hashKey: table.hashKey, rangeKey: table.rangeKey }, physicalName);
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
