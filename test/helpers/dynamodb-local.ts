import { startDynamoDbLocal as startOn, type DynamoDbLocal } from '../../infra/local/dynamodb-local.ts';
import { freePort } from './ports.ts';

export { localDynamoClientConfig, type DynamoDbLocal } from '../../infra/local/dynamodb-local.ts';

/** DynamoDB Local on a free port, for a test run. */
export async function startDynamoDbLocal(): Promise<DynamoDbLocal> {
  return startOn(await freePort());
}
