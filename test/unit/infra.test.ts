import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineTable, exampleTables } from '../../lib/index.ts';
import { loadYaml, readTableTemplate, TABLE_NAME_PREFIX, TableTemplateError } from '../../infra/tables.ts';
import { createTableInput } from '../../infra/local/create-tables.ts';
import streamMappings from '../../infra/stream-mappings.cjs';

const SERVERLESS_YML = fileURLToPath(new URL('../../serverless.yml', import.meta.url));
const template = readTableTemplate();

type Obj = Record<string, any>;

/** A throwaway tables.yml with one table whose properties `props` overrides. */
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

describe('infra/tables.yml: the one declaration of the tables', () => {
  test('declares exactly the tables lib/tables.ts declares, with the same key names and types', () => {
    const declared = (t: { name: string; hashKey: object; rangeKey: object | undefined }) => ({
      name: t.name,
      hashKey: { ...t.hashKey },
      rangeKey: t.rangeKey ? { ...t.rangeKey } : undefined,
    });
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    assert.deepEqual(template.map(declared).sort(byName), exampleTables.map(declared).sort(byName));
  });

  test('every table is on-demand, streams its keys, and has point-in-time recovery', () => {
    for (const t of template) {
      assert.equal(t.billingMode, 'PAY_PER_REQUEST', t.name);
      // Every view type carries Keys, which is all the consumer reads (lib/stream/consumer.ts).
      assert.ok(t.streamViewType !== undefined, `${t.name} has no stream`);
      assert.ok(['KEYS_ONLY', 'NEW_IMAGE', 'OLD_IMAGE', 'NEW_AND_OLD_IMAGES'].includes(t.streamViewType), t.name);
      assert.equal(t.pointInTimeRecovery, true, t.name);
    }
  });

  test('the version attribute is no key attribute of the deployed table', () => {
    for (const lib of exampleTables) {
      const t = template.find((x) => x.name === lib.name);
      assert.ok(t);
      assert.notEqual(t.hashKey.name, lib.versionAttribute);
      assert.notEqual(t.rangeKey?.name, lib.versionAttribute);
    }
  });

  test('the functions look tables up under the prefix the template names them with', () => {
    const sls = loadYaml(SERVERLESS_YML) as Obj;
    assert.equal(sls.provider.environment.TABLE_PREFIX, TABLE_NAME_PREFIX);
    assert.ok(sls.resources.includes('${file(infra/tables.yml)}'), 'serverless.yml includes infra/tables.yml');
  });

  test('the stream consumer subscribes to the stream of every table, and of nothing else', () => {
    const sls = loadYaml(SERVERLESS_YML) as Obj;
    const arns = (sls.functions.stream.events as Obj[]).map((e) => e.stream.arn);
    assert.deepEqual(
      arns.map((a) => JSON.stringify(a)).sort(),
      template.map((t) => JSON.stringify({ 'Fn::GetAtt': [t.logicalId, 'StreamArn'] })).sort(),
    );
  });
});

describe('serverless.yml: the mappings take their settings from infra/stream-mappings.cjs', () => {
  test('every stream event, of the consumer and of the replayer, reads each setting from the one module the local feed reads', () => {
    const sls = loadYaml(SERVERLESS_YML) as Obj;
    assert.equal(sls.custom.streamMapping, '${file(infra/stream-mappings.cjs)}');
    const settings = Object.keys(streamMappings.mappingSettings(3600));
    const events = ['stream', 'replay'].flatMap((fn) => (sls.functions[fn].events as Obj[]).map((e) => e.stream));
    assert.equal(events.length, template.length + 1);
    for (const e of events) {
      for (const name of settings) assert.equal(e[name], `\${self:custom.streamMapping.${name}}`, `${JSON.stringify(e.arn)}: ${name}`);
    }
    for (const fn of ['stream', 'replay', 'sweep']) {
      assert.equal(sls.functions[fn].environment.STREAM_RETRY_WINDOW_SECONDS, '${self:custom.streamMapping.maximumRecordAgeInSeconds}', fn);
    }
  });
});

describe('infra/local/create-tables.ts: the local stack creates what the deploy declares', () => {
  test('CreateTable inputs come from the template, under the local prefix', () => {
    const [users, orders, readings] = ['users', 'orders', 'readings'].map((n) => exampleTables.find((t) => t.name === n)!);
    const stream = { StreamEnabled: true, StreamViewType: template[0]!.streamViewType };
    assert.deepEqual(createTableInput(users!, 'p-users'), {
      TableName: 'p-users',
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'userId', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'userId', AttributeType: 'S' }],
      StreamSpecification: stream,
    });
    assert.deepEqual(createTableInput(orders!, 'p-orders'), {
      TableName: 'p-orders',
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [
        { AttributeName: 'customerId', KeyType: 'HASH' },
        { AttributeName: 'orderId', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'customerId', AttributeType: 'S' },
        { AttributeName: 'orderId', AttributeType: 'S' },
      ],
      StreamSpecification: stream,
    });
    assert.deepEqual(createTableInput(readings!, 'p-readings').AttributeDefinitions, [
      { AttributeName: 'sensorId', AttributeType: 'S' },
      { AttributeName: 'ts', AttributeType: 'N' },
    ]);
  });

  test('a library declaration whose keys differ from the template is refused', () => {
    const users = defineTable({ name: 'users', hashKey: { name: 'userId', type: 'N' } });
    assert.throws(() => createTableInput(users, 'p-users'), /users.*infra\/tables\.yml declares keys \(userId S\)/);
  });

  test("a test's own table, absent from the template, gets the template's shared settings", () => {
    const blobs = defineTable({ name: 'blobs', hashKey: { name: 'id', type: 'B' } });
    const input = createTableInput(blobs, 'p-blobs');
    assert.equal(input.BillingMode, 'PAY_PER_REQUEST');
    assert.deepEqual(input.KeySchema, [{ AttributeName: 'id', KeyType: 'HASH' }]);
    assert.deepEqual(input.AttributeDefinitions, [{ AttributeName: 'id', AttributeType: 'B' }]);
    assert.equal(input.StreamSpecification?.StreamViewType, template[0]!.streamViewType);
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
