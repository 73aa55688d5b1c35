/**
 * Outside review of the write path of issue 13: the commit deadline. A writer's DynamoDB request is
 * bounded by the commit deadline (counted from the earliest begin's answer) so that it lands inside
 * the writer's fence (ARCHITECTURE.md, "The fence time"; Limits: G1 under strict rests on "the DynamoDB
 * write finishing within its fence (the store stops the SDK at the commit deadline)"). A commit that
 * reaches the point of sending only after its deadline (a process starved of CPU or paused by a GC
 * between the begin's answer and the send; here the beforeCommit seam holds it there) must send
 * nothing: its fence may be gone already.
 *
 * The interleaving:
 * 1. W (strict) begins: its fence is up until begin + fence time (deadline 500 + command timeout 500
 *    + 1000 ms margin = 2 s here).
 * 2. W is held between the begin's answer and its commit for longer than the fence time.
 * 3. W goes on: its deadline is past. The store arms a 1 ms abort (Math.max(1, deadline - now)) and
 *    hands the request to the HTTP handler, which writes it to the socket before that timer can fire.
 * 4. Whether the request reaches DynamoDB is then a race between the socket write and the 1 ms timer:
 *    both were seen here through a recording proxy (the put applied, n=2 in DynamoDB, with W answering
 *    StoreUnavailableError; the update on the wire but aborted). A write applied after its fence
 *    expired is what the Limits rule out for G1 under strict with a lost END_WRITE.
 * Expected: no request handed to the HTTP handler once the deadline has passed, unless with a signal
 * that already reads as aborted (which the handler refuses before writing anything: a check before
 * the send, not only an abort armed for 1 ms; lib/store.ts `until`). Observed on h-writes 44dca6a to cbef140, and on main, whose `until()`
 * does the same: the request is handed over.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { dynamoEndpoint, Gate, startStack, type TestStack } from '../helpers/stack.ts';
import { withCache } from '../../lib/index.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The SDK's own HTTP handler, recording each request it is handed (its operation, and when) before
 * sending it as usual to DynamoDB Local: what reaches this point goes on the wire unless an abort
 * wins a race with the socket write.
 */
class RecordingHandler extends NodeHttpHandler {
  readonly handed: { op: string; at: number }[] = [];
  override handle(...args: Parameters<NodeHttpHandler['handle']>): ReturnType<NodeHttpHandler['handle']> {
    const [request, options] = args;
    const target = request.headers['x-amz-target'] ?? '';
    // A request handed over with a signal that already reads as aborted is refused by the handler
    // before anything is written to the socket (its first check): only the others can reach DynamoDB.
    if (!options?.abortSignal?.aborted) this.handed.push({ op: target.replace(/^DynamoDB_20120810\./, ''), at: Date.now() });
    return super.handle(...args);
  }
}

describe('review (issue 13 write path): the commit deadline', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 1 });
  });
  after(async () => stack.stop());

  async function nInDynamo(userId: string): Promise<string | undefined> {
    const out = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: userId } }, ConsistentRead: true }),
    );
    return out.Item?.n?.N;
  }

  for (const op of ['update', 'put'] as const) {
    test(`strict ${op}: a commit that reaches DynamoDB only after its deadline (and its fence) sends nothing`, async () => {
      const userId = `late-${op}`;
      const gate = new Gate();
      let hold = false;
      const handler = new RecordingHandler({ requestTimeout: 3000, connectionTimeout: 3000, throwOnRequestTimeout: true });
      const dynamoClient = new DynamoDBClient({
        endpoint: dynamoEndpoint(),
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        maxAttempts: 1,
        requestHandler: handler,
      });
      const writer = stack.cache(
        { CACHE_WRITE_POLICY: 'strict', DYNAMODB_DEADLINE_MS: '500', CACHE_COMMAND_TIMEOUT_MS: '500' },
        { hooks: { beforeCommit: () => (hold ? gate.hold() : undefined) }, dynamoClient },
      );
      await stack.cache().put('users', { userId, n: 1 });
      // Warm the writer's connections (a cold DynamoDB client may not make the short deadline once).
      for (let i = 0; i < 5; i++) {
        try {
          await writer.get('users', { userId });
          break;
        } catch {
          await sleep(100);
        }
      }
      hold = true;
      const write = op === 'update' ? writer.update('users', { userId }, { set: { n: 2 } }) : writer.put('users', { userId, n: 2 });
      const outcome = write.then(
        () => 'acknowledged',
        (err: Error) => err.name,
      );
      await gate.reached;
      hold = false;
      await sleep(2500); // past the deadline (500 ms) and the fence (2 s)
      const openedAt = Date.now(); // past the writer's deadline: its begin was answered before the gate was reached
      gate.open();
      const result = await outcome;
      const late = handler.handed.filter((h) => h.at >= openedAt).map((h) => h.op);
      assert.deepEqual(
        late,
        [],
        `the writer answered ${result}; DynamoDB holds n=${await nInDynamo(userId)}; requests handed to the HTTP handler after the deadline: ${late.join(', ')}`,
      );
      // Nothing was written, and the writer was not acknowledged.
      assert.equal(await nInDynamo(userId), '1');
      assert.notEqual(result, 'acknowledged');
      dynamoClient.destroy();
    });
  }

  test('strict drop-in put (withCache): a commit that reaches DynamoDB only after its deadline sends nothing', async () => {
    // The drop-in bounds the caller's own request by the write's deadline (client.ts withDeadline).
    const userId = 'late-drop-in';
    const gate = new Gate();
    let hold = false;
    const handler = new RecordingHandler({ requestTimeout: 3000, connectionTimeout: 3000, throwOnRequestTimeout: true });
    const dynamoClient = new DynamoDBClient({
      endpoint: dynamoEndpoint(),
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      maxAttempts: 1,
      requestHandler: handler,
    });
    const cache = stack.cache(
      { CACHE_WRITE_POLICY: 'strict', DYNAMODB_DEADLINE_MS: '500', CACHE_COMMAND_TIMEOUT_MS: '500' },
      { hooks: { beforeCommit: () => (hold ? gate.hold() : undefined) } },
    );
    const client = withCache(DynamoDBDocumentClient.from(dynamoClient), { cache });
    const TableName = `${stack.prefix}users`;
    await client.send(new PutCommand({ TableName, Item: { userId, n: 1 } }));
    hold = true;
    const outcome = client.send(new PutCommand({ TableName, Item: { userId, n: 2 } })).then(
      () => 'acknowledged',
      (err: Error) => err.name,
    );
    await gate.reached;
    hold = false;
    await sleep(2500); // past the deadline (500 ms) and the fence (2 s)
    const openedAt = Date.now();
    gate.open();
    const result = await outcome;
    const late = handler.handed.filter((h) => h.at >= openedAt).map((h) => h.op);
    assert.deepEqual(late, [], `the writer answered ${result}; requests handed over after the deadline: ${late.join(', ')}`);
    assert.equal(await nInDynamo(userId), '1');
    assert.notEqual(result, 'acknowledged');
    dynamoClient.destroy();
  });
});
