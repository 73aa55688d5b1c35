/**
 * A team's own table, added to tables.json and nowhere else, in a copy of the repository: the
 * package's CloudFormation creates it, streams it to the consumer and grants it to the roles, and
 * the local stack (`npm start`) creates it and serves it over HTTP, a change made straight to
 * DynamoDB reaching the cache through its stream.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DescribeTableCommand, DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { localDynamoClientConfig } from '../helpers/dynamodb-local.ts';
import { req, startLocalStack, stopLocalStack, type Stack } from '../helpers/local-stack.ts';
import { eventually } from '../helpers/stack.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Not copied: dependencies (linked instead), git, and build output. */
const SKIP = new Set(['node_modules', '.git', '.serverless', '.esbuild']);

const OWN_TABLE = {
  name: 'invoice-lines',
  hashKey: { name: 'invoiceId', type: 'S' },
  rangeKey: { name: 'line', type: 'N' },
  ttlSeconds: 7200,
  streamViewType: 'NEW_IMAGE',
};
const ID = 'InvoiceLinesTable';

type Obj = Record<string, any>;

let copy: string;

before(() => {
  copy = mkdtempSync(join(tmpdir(), 'own-table-'));
  cpSync(ROOT, copy, {
    recursive: true,
    filter: (src) =>
      !relative(ROOT, src)
        .split(sep)
        .some((part) => SKIP.has(part)),
  });
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(copy, 'node_modules'));
  const file = join(copy, 'tables.json');
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  doc.tables.push(OWN_TABLE);
  writeFileSync(file, JSON.stringify(doc, null, 2));
});

after(() => rmSync(copy, { recursive: true, force: true }));

describe('a table added to tables.json alone', () => {
  test('npm run package: the table, its stream mapping, its retry window and its grants in the template', () => {
    const run = spawnSync('npm', ['run', '--silent', 'package'], { cwd: copy, encoding: 'utf8', timeout: 300_000 });
    assert.equal(run.status, 0, `npm run package failed (${run.status ?? run.signal}):\n${run.stdout}\n${run.stderr}`);
    const template = JSON.parse(readFileSync(join(copy, '.serverless', 'cloudformation-template-update-stack.json'), 'utf8'));
    const resources: Obj = template.Resources;

    const table = resources[ID];
    assert.equal(table?.Type, 'AWS::DynamoDB::Table');
    assert.equal(table.Properties.TableName, 'dynamo-redis-cache-dev-invoice-lines');
    assert.deepEqual(table.Properties.KeySchema, [
      { AttributeName: 'invoiceId', KeyType: 'HASH' },
      { AttributeName: 'line', KeyType: 'RANGE' },
    ]);
    assert.deepEqual(table.Properties.StreamSpecification, { StreamViewType: 'NEW_IMAGE' });

    const arn = JSON.stringify({ 'Fn::GetAtt': [ID, 'Arn'] });
    const streamArn = JSON.stringify({ 'Fn::GetAtt': [ID, 'StreamArn'] });
    /** The resources a role grants `action` on, as JSON texts. */
    const granted = (role: string, action: string): string[] =>
      resources[role].Properties.Policies.flatMap((p: Obj) => p.PolicyDocument.Statement)
        .filter((s: Obj) => [s.Action].flat().includes(action))
        .flatMap((s: Obj) => [s.Resource].flat().map((r: unknown) => JSON.stringify(r)));
    for (const action of ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query']) {
      assert.ok(granted('ReadFunctionRole', action).includes(arn), `read: ${action}`);
    }
    for (const action of ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:GetItem']) {
      assert.ok(granted('WriteFunctionRole', action).includes(arn), `write: ${action}`);
    }
    for (const action of ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator']) {
      assert.ok(granted('StreamFunctionRole', action).includes(streamArn), `stream: ${action}`);
    }

    const mappings = Object.values(resources).filter((r: Obj) => r.Type === 'AWS::Lambda::EventSourceMapping');
    const mine = mappings.find((m: Obj) => JSON.stringify(m.Properties.EventSourceArn) === streamArn);
    assert.deepEqual(mine?.Properties.FunctionName, { 'Fn::GetAtt': ['StreamLambdaFunction', 'Arn'] });
    // The table's own TTL (7200 s, over the default 3600 s) sets every mapping's window, and the functions'.
    for (const m of mappings) assert.equal(m.Properties.MaximumRecordAgeInSeconds, 7200 + 300);
    assert.equal(resources.StreamLambdaFunction.Properties.Environment.Variables.STREAM_RETRY_WINDOW_SECONDS, '7500');
  });

  describe('npm start', () => {
    let s: Stack;
    before(async () => {
      s = await startLocalStack({}, copy);
    });
    after(async () => stopLocalStack(s));

    test('creates the table with its stream, serves it over HTTP, and a direct write reaches the cache through the stream', async () => {
      const physical = `dynamo-redis-cache-${s.stage}-invoice-lines`;
      const dynamo = new DynamoDBClient(localDynamoClientConfig(process.env.DYNAMODB_ENDPOINT!));
      try {
        const described = await dynamo.send(new DescribeTableCommand({ TableName: physical }));
        assert.equal(described.Table?.StreamSpecification?.StreamViewType, 'NEW_IMAGE');

        const put = await req(s, 'PUT', '/tables/invoice-lines/items/inv-1/1', { amount: 5 });
        assert.equal(put.status, 200, put.text);
        assert.deepEqual(put.json, { invoiceId: 'inv-1', line: 1, amount: 5 });
        await eventually('a read of the new table is a hit', async () => {
          const r = await req(s, 'GET', '/tables/invoice-lines/items/inv-1/1');
          return r.status === 200 && r.headers.get('x-cache') === 'hit';
        });

        await dynamo.send(
          new PutItemCommand({ TableName: physical, Item: { invoiceId: { S: 'inv-1' }, line: { N: '1' }, amount: { N: '7' } } }),
        );
        await eventually(
          'the direct write is read through the API',
          async () => (await req(s, 'GET', '/tables/invoice-lines/items/inv-1/1')).json?.amount === 7,
        );
      } finally {
        dynamo.destroy();
      }
    });
  });
});
