import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { declaredTables, defineTable, tablesFromJson, ValidationError } from '../../lib/index.ts';
import { loadYaml, readTableTemplate, TABLE_NAME_PREFIX, TableTemplateError } from '../../infra/tables.ts';
import { createTableInput } from '../../infra/local/create-tables.ts';
import streamMappings from '../../infra/stream-mappings.cjs';
import tablesCjs from '../../infra/tables.cjs';

const SERVERLESS_YML = fileURLToPath(new URL('../../serverless.yml', import.meta.url));
const IAM_YML = fileURLToPath(new URL('../../infra/iam.yml', import.meta.url));

type Obj = Record<string, any>;

/** A throwaway CloudFormation file with one table whose properties `props` overrides. */
function templateWith(props: Obj): string {
  const dir = mkdtempSync(join(tmpdir(), 'tables-yml-'));
  const path = join(dir, 'tables.yml');
  const table = {
    Type: 'AWS::DynamoDB::Table',
    Properties: {
      TableName: `${TABLE_NAME_PREFIX}things`,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      ...props,
    },
  };
  writeFileSync(path, JSON.stringify({ Resources: { ThingsTable: table } }));
  return path;
}

/** A throwaway tables.json holding `doc`. */
function withTablesFile<T>(doc: unknown, run: (path: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'tables-json-'));
  try {
    const path = join(dir, 'tables.json');
    writeFileSync(path, JSON.stringify(doc));
    return run(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What osls hands a file variable's function: the params and custom values of serverless.yml. */
const context = (values: Record<string, unknown> = {}) => ({
  resolveVariable: async (v: string) =>
    ({
      'self:custom.tablePrefix': TABLE_NAME_PREFIX,
      'param:tableDeletionPolicy': 'Delete',
      'param:tableDeletionProtection': 'false',
      'param:cacheTtlSeconds': '3600',
      'param:largestTableTtlSeconds': '0',
      ...values,
    })[v],
});

describe('tables.json: the one declaration of the tables', () => {
  test('the library and the deploy read the same tables, keys and stream view types from it', () => {
    const fromDeploy = tablesCjs.readTables().map((t) => ({ name: t.name, keys: t.keys, streamViewType: t.streamViewType }));
    const fromLibrary = declaredTables.map((t) => ({
      name: t.name,
      keys: [t.hashKey, ...(t.rangeKey ? [t.rangeKey] : [])].map((k) => ({ ...k })),
      streamViewType: t.streamViewType,
    }));
    assert.deepEqual(fromDeploy, fromLibrary);
    assert.deepEqual(
      declaredTables.map((t) => t.name),
      ['users', 'orders', 'readings'],
    );
  });

  test('each table becomes an on-demand table with its stream and point-in-time recovery, under the logical id it always had', async () => {
    const { Resources, Outputs } = await tablesCjs.resources(context({ 'param:tableDeletionPolicy': 'Retain' }));
    // Renaming a deployed table's logical id would replace the table: the ids of tables.yml are kept.
    assert.deepEqual(Object.keys(Resources), ['UsersTable', 'OrdersTable', 'ReadingsTable']);
    assert.deepEqual(Resources.OrdersTable, {
      Type: 'AWS::DynamoDB::Table',
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: {
        TableName: `${TABLE_NAME_PREFIX}orders`,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'customerId', AttributeType: 'S' },
          { AttributeName: 'orderId', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'customerId', KeyType: 'HASH' },
          { AttributeName: 'orderId', KeyType: 'RANGE' },
        ],
        StreamSpecification: { StreamViewType: 'NEW_IMAGE' },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: false,
      },
    });
    assert.deepEqual(Outputs.ReadingsTableStreamArn, { Value: { 'Fn::GetAtt': ['ReadingsTable', 'StreamArn'] } });
  });

  test('a declared view type and TTL reach the template and the retry window', () => {
    const doc = {
      tables: [
        { name: 'order-lines', hashKey: { name: 'id', type: 'S' }, streamViewType: 'KEYS_ONLY', ttlSeconds: 7200 },
        { name: 'users', hashKey: { name: 'userId', type: 'S' } },
      ],
    };
    withTablesFile(doc, (path) => {
      const [lines, users] = tablesCjs.readTables(path);
      assert.equal(lines?.logicalId, 'OrderLinesTable');
      assert.equal(lines?.streamViewType, 'KEYS_ONLY');
      assert.equal(lines?.ttlSeconds, 7200);
      // Undeclared: new images, which let the consumer keep what the library's own writes store.
      assert.equal(users?.streamViewType, 'NEW_IMAGE');
    });
    const [lines, users] = tablesFromJson(doc);
    assert.equal(lines?.streamViewType, 'KEYS_ONLY');
    assert.equal(users?.streamViewType, 'NEW_IMAGE');
    assert.equal(lines?.allWritesThroughStrictCache, false);
  });

  test('what the package and the library refuse in the file, each by name', () => {
    const refusedByBoth = (doc: unknown, message: RegExp) => {
      withTablesFile(doc, (path) => assert.throws(() => tablesCjs.readTables(path), message));
      assert.throws(
        () => tablesFromJson(doc),
        (e: unknown) => e instanceof ValidationError && message.test(e.message),
      );
    };
    refusedByBoth({ tables: [] }, /one table or more/);
    refusedByBoth({ tables: [{ name: 'x', hashKey: { name: 'id', type: 'S' } }] }, /3-200 characters/);
    refusedByBoth({ tables: [{ name: 'things', hashKey: { name: 'id', type: 'X' } }] }, /S.*N.*B/);
    refusedByBoth({ tables: [{ name: 'things', hashKey: { name: 'id', type: 'S' }, streamViewType: 'KEYS' }] }, /KEYS_ONLY, NEW_IMAGE/);
    refusedByBoth({ tables: [{ name: 'things', hashKey: { name: 'id', type: 'S' }, ttlSeconds: 0 }] }, /positive whole number/);
    refusedByBoth({ tables: [{ name: 'things' }] }, /hashKey/);
    // The library names what the template does not need: a misspelt field, a flag that is no boolean.
    const refused = (doc: unknown, message: RegExp) =>
      assert.throws(
        () => tablesFromJson(doc),
        (e: unknown) => e instanceof ValidationError && message.test(e.message),
      );
    refused({ tables: [{ name: 'things', hashKey: { name: 'id', type: 'S' }, ttlSecond: 60 }] }, /unknown field 'ttlSecond'/);
    refused({ tables: [{ name: 'things', hashKey: { name: 'id', type: 'S' }, cached: 'no' }] }, /cached.*true or false/);
    refused(
      {
        tables: [
          { name: 'things', hashKey: { name: 'id', type: 'S' } },
          { name: 'things', hashKey: { name: 'id', type: 'S' } },
        ],
      },
      /declared twice/,
    );
    // Two names that would make one CloudFormation id.
    withTablesFile(
      {
        tables: [
          { name: 'a-b-c', hashKey: { name: 'id', type: 'S' } },
          { name: 'a_b_c', hashKey: { name: 'id', type: 'S' } },
        ],
      },
      (path) => assert.throws(() => tablesCjs.readTables(path), /same CloudFormation id ABCTable/),
    );
  });

  test('the functions look tables up under the prefix the template names them with', () => {
    const sls = loadYaml(SERVERLESS_YML) as Obj;
    assert.equal(sls.provider.environment.TABLE_PREFIX, TABLE_NAME_PREFIX);
    assert.ok(sls.resources.includes('${file(infra/tables.cjs):resources}'), 'serverless.yml includes the tables of tables.json');
  });

  test('the stream consumer subscribes to the stream of every table, with the mappings settings', async () => {
    const sls = loadYaml(SERVERLESS_YML) as Obj;
    assert.equal(sls.functions.stream.events, '${file(infra/tables.cjs):streamEvents}');
    const events = await tablesCjs.streamEvents(context());
    assert.deepEqual(
      events.map((e) => e.stream.arn),
      ['UsersTable', 'OrdersTable', 'ReadingsTable'].map((id) => ({ 'Fn::GetAtt': [id, 'StreamArn'] })),
    );
    // What the stream gives up on goes to the queue of infra/parking.yml.
    const destinations = { onFailure: { arn: { 'Fn::GetAtt': ['StreamRecordsGivenUpQueue', 'Arn'] }, type: 'sqs' } };
    for (const e of events)
      assert.deepEqual(e.stream, { type: 'dynamodb', arn: e.stream.arn, ...streamMappings.mappingSettings(3600), destinations });
  });

  test('the roles are granted the tables of tables.json', async () => {
    const iam = readFileSync(IAM_YML, 'utf8');
    for (const piece of ['tableArns', 'streamArns', 'tableStreams']) assert.ok(iam.includes(`\${file(infra/tables.cjs):${piece}}`), piece);
    assert.deepEqual(await tablesCjs.tableArns(), [
      { 'Fn::GetAtt': ['UsersTable', 'Arn'] },
      { 'Fn::GetAtt': ['OrdersTable', 'Arn'] },
      { 'Fn::GetAtt': ['ReadingsTable', 'Arn'] },
    ]);
  });
});

describe('serverless.yml: the mappings take their settings from infra/stream-mappings.cjs', () => {
  test('the replayer reads each setting from the module the local feed reads, with a window over the tables TTLs', async () => {
    const sls = loadYaml(SERVERLESS_YML) as Obj;
    assert.equal(sls.custom.streamMapping, '${file(infra/tables.cjs):streamMapping}');
    assert.deepEqual(await tablesCjs.streamMapping(context()), streamMappings.mappingSettings(3600));
    assert.deepEqual(
      await tablesCjs.streamMapping(context({ 'param:largestTableTtlSeconds': '5000' })),
      streamMappings.mappingSettings(5000),
    );
    const settings = Object.keys(streamMappings.mappingSettings(3600));
    const [replay] = (sls.functions.replay.events as Obj[]).map((e) => e.stream);
    for (const name of settings) assert.equal(replay[name], `\${self:custom.streamMapping.${name}}`, name);
    for (const fn of ['stream', 'replay', 'sweep']) {
      assert.equal(sls.functions[fn].environment.STREAM_RETRY_WINDOW_SECONDS, '${self:custom.streamMapping.maximumRecordAgeInSeconds}', fn);
    }
  });
});

describe('infra/local/create-tables.ts: the local stack creates what the deploy declares', () => {
  test('CreateTable inputs come from the declarations, under the local prefix', () => {
    const [users, orders, readings] = ['users', 'orders', 'readings'].map((n) => declaredTables.find((t) => t.name === n)!);
    const stream = { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' };
    assert.deepEqual(createTableInput(users!, 'p-users'), {
      TableName: 'p-users',
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'userId', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'userId', AttributeType: 'S' }],
      StreamSpecification: stream,
    });
    assert.deepEqual(createTableInput(orders!, 'p-orders').KeySchema, [
      { AttributeName: 'customerId', KeyType: 'HASH' },
      { AttributeName: 'orderId', KeyType: 'RANGE' },
    ]);
    assert.deepEqual(createTableInput(readings!, 'p-readings').AttributeDefinitions, [
      { AttributeName: 'sensorId', AttributeType: 'S' },
      { AttributeName: 'ts', AttributeType: 'N' },
    ]);
  });

  test("a table's declared view type is the local stream's", () => {
    const blobs = defineTable({ name: 'blobs', hashKey: { name: 'id', type: 'B' }, streamViewType: 'NEW_AND_OLD_IMAGES' });
    const input = createTableInput(blobs, 'p-blobs');
    assert.deepEqual(input.AttributeDefinitions, [{ AttributeName: 'id', AttributeType: 'B' }]);
    assert.deepEqual(input.StreamSpecification, { StreamEnabled: true, StreamViewType: 'NEW_AND_OLD_IMAGES' });
  });
});

describe('infra/tables.ts: what the parser refuses', () => {
  const refuses = (props: Obj, message: RegExp) => {
    const path = templateWith(props);
    try {
      assert.throws(
        () => readTableTemplate(path),
        (e: unknown) => e instanceof TableTemplateError && message.test(e.message),
      );
    } finally {
      rmSync(join(path, '..'), { recursive: true, force: true });
    }
  };

  test('a TableName it cannot map to a logical name', () => {
    refuses({ TableName: { 'Fn::Sub': '${AWS::StackName}-things' } }, /TableName must be a literal string/);
    refuses({ TableName: 'things' }, /must be '\$\{self:custom\.tablePrefix\}<logical name>'/);
  });

  test('a key without an attribute definition, and a definition that is no key', () => {
    refuses({ KeySchema: [{ AttributeName: 'other', KeyType: 'HASH' }] }, /'other' has no AttributeDefinition/);
    refuses(
      {
        AttributeDefinitions: [
          { AttributeName: 'id', AttributeType: 'S' },
          { AttributeName: 'extra', AttributeType: 'S' },
        ],
      },
      /exactly the key attributes/,
    );
  });

  test('short-form intrinsics parse as their long forms', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tables-yml-'));
    try {
      const path = join(dir, 'x.yml');
      writeFileSync(path, 'a: !GetAtt T.StreamArn\nb: !Ref T\nc: !Sub "x-${AWS::Region}"\nd: !Join [",", [!Ref A, b]]\n');
      assert.deepEqual(loadYaml(path), {
        a: { 'Fn::GetAtt': ['T', 'StreamArn'] },
        b: { Ref: 'T' },
        c: { 'Fn::Sub': 'x-${AWS::Region}' },
        d: { 'Fn::Join': [',', [{ Ref: 'A' }, 'b']] },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
