/**
 * `npm run package` (its `osls package` and params, made once per set of inputs and shared with
 * template-spec.test.ts: test/helpers/package.ts): the zips Lambda would get and the CloudFormation
 * template the deploy would submit, checked for size, self-containment, least privilege and
 * authorization.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { packaged } from '../helpers/package.ts';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import streamMappings from '../../infra/stream-mappings.cjs';
import { loadConfig } from '../../lib/config.ts';
import { declaredTables } from '../../lib/tables.ts';
import tablesCjs from '../../infra/tables.cjs';
import { checkRetryWindow } from '../../lib/stream/window.ts';
import { alarmMetrics, dashboardBody, dashboardMetrics } from '../helpers/monitoring.ts';

/** Where the package is (test/helpers/package.ts). */
let OUT: string;
const MAX_ZIP_BYTES = 300 * 1024;

type Obj = Record<string, any>;

/** The tables of tables.json, by CloudFormation id. */
const TABLES = tablesCjs.readTables().map((t) => t.logicalId);
const tableArns = TABLES.map((t) => ({ 'Fn::GetAtt': [t, 'Arn'] }));
const streamArns = TABLES.map((t) => ({ 'Fn::GetAtt': [t, 'StreamArn'] }));
/** Every stream of each table: what ListStreams, which names a table and not a stream, is authorized on. */
const tableStreams = TABLES.map((t) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [t, 'Arn'] }, '/stream/*']] }));
/** Where the Streams consumer parks what it cannot apply (infra/parking.yml). */
const PARKING = 'ParkedInvalidationsTable';
const parkingArn = [{ 'Fn::GetAtt': [PARKING, 'Arn'] }];
const parkingStream = [{ 'Fn::GetAtt': [PARKING, 'StreamArn'] }];

/** Where Lambda reports stream records it gave up on (infra/parking.yml). */
const givenUpQueue = [{ 'Fn::GetAtt': ['StreamRecordsGivenUpQueue', 'Arn'] }];

/** Each function: its bundle, its role, and every action its role may take, on what. */
const FUNCTIONS = {
  read: {
    entry: 'functions/http/read.mjs',
    role: 'ReadFunctionRole',
    grants: { 'dynamodb:GetItem': tableArns, 'dynamodb:BatchGetItem': tableArns, 'dynamodb:Query': tableArns },
  },
  write: {
    entry: 'functions/http/write.mjs',
    role: 'WriteFunctionRole',
    grants: {
      'dynamodb:PutItem': tableArns,
      'dynamodb:UpdateItem': tableArns,
      'dynamodb:DeleteItem': tableArns,
      'dynamodb:GetItem': tableArns,
    },
  },
  health: { entry: 'functions/http/health.mjs', role: 'HealthFunctionRole', grants: {} },
  stream: {
    entry: 'functions/stream.mjs',
    role: 'StreamFunctionRole',
    grants: {
      'dynamodb:DescribeStream': streamArns,
      'dynamodb:GetRecords': streamArns,
      'dynamodb:GetShardIterator': streamArns,
      'dynamodb:ListStreams': tableStreams,
      'dynamodb:PutItem': parkingArn,
      'sqs:SendMessage': givenUpQueue,
    },
  },
  replay: {
    entry: 'functions/replay.mjs',
    role: 'ReplayFunctionRole',
    grants: {
      'dynamodb:DescribeStream': parkingStream,
      'dynamodb:GetRecords': parkingStream,
      'dynamodb:GetShardIterator': parkingStream,
      'dynamodb:ListStreams': [{ 'Fn::Join': ['', [{ 'Fn::GetAtt': [PARKING, 'Arn'] }, '/stream/*']] }],
      'dynamodb:DeleteItem': parkingArn,
      'sqs:SendMessage': givenUpQueue,
    },
  },
  sweep: {
    entry: 'functions/sweep.mjs',
    role: 'SweepFunctionRole',
    grants: { 'dynamodb:Scan': parkingArn, 'dynamodb:UpdateItem': parkingArn, 'dynamodb:DeleteItem': parkingArn },
  },
} as const;
type FunctionName = keyof typeof FUNCTIONS;
const logicalId = (fn: string) => `${fn[0]!.toUpperCase()}${fn.slice(1)}LambdaFunction`;

const ROUTES: Record<string, FunctionName> = {
  'GET /tables/{table}/items/{hash}': 'read',
  'GET /tables/{table}/items/{hash}/{range}': 'read',
  'GET /tables/{table}/item': 'read',
  'GET /tables/{table}/items': 'read',
  'POST /tables/{table}/batch-get': 'read',
  'PUT /tables/{table}/item': 'write',
  'PATCH /tables/{table}/item': 'write',
  'DELETE /tables/{table}/item': 'write',
  'PUT /tables/{table}/items/{hash}': 'write',
  'PUT /tables/{table}/items/{hash}/{range}': 'write',
  'PATCH /tables/{table}/items/{hash}': 'write',
  'PATCH /tables/{table}/items/{hash}/{range}': 'write',
  'DELETE /tables/{table}/items/{hash}': 'write',
  'DELETE /tables/{table}/items/{hash}/{range}': 'write',
  'GET /health': 'health',
};

/**
 * Not in the bundle, and not needed: the SDK's SigV4a signers (multi-region endpoints, which
 * DynamoDB does not use), loaded in a try or named in an error message.
 */
const OPTIONAL_MODULES = ['@aws-sdk/signature-v4-crt', '@aws-sdk/signature-v4a'];

/** What every role holds beside its own grants (infra/iam.yml): its log group, the VPC's ENI calls, its two secrets. */
const ENI_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeSubnets',
  'ec2:DeleteNetworkInterface',
  'ec2:AssignPrivateIpAddresses',
  'ec2:UnassignPrivateIpAddresses',
];
function basicGrants(fn: string): Record<string, unknown[]> {
  const logGroup = [{ 'Fn::GetAtt': [`${fn[0]!.toUpperCase()}${fn.slice(1)}LogGroup`, 'Arn'] }];
  const secrets = [{ Ref: 'CacheAuthToken' }, { Ref: 'LogKeysSecret' }];
  return {
    'logs:CreateLogStream': logGroup,
    'logs:PutLogEvents': logGroup,
    ...Object.fromEntries(ENI_ACTIONS.map((a) => [a, ['*']])),
    'secretsmanager:GetSecretValue': secrets,
  };
}

/** The entries of a zip archive (stored or deflated, as archiver writes them), by name. */
function readZip(path: string): Map<string, Buffer> {
  const zip = readFileSync(path);
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  assert.ok(eocd >= 0, `${path}: no end of central directory`);
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    assert.equal(zip.readUInt32LE(at), 0x02014b50, `${path}: bad central directory entry`);
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const size = zip.readUInt32LE(at + 24);
    const nameLength = zip.readUInt16LE(at + 28);
    const skip = zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    const dataAt = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    assert.ok(method === 0 || method === 8, `${path}: ${name} uses compression method ${method}`);
    const data = zip.subarray(dataAt, dataAt + compressed);
    const content = method === 8 ? inflateRawSync(data) : Buffer.from(data);
    assert.equal(content.length, size, `${path}: ${name} has the wrong size`);
    if (!name.endsWith('/')) entries.set(name, content);
    at += 46 + nameLength + skip;
  }
  return entries;
}

/** Allow statements of every policy document in the template (identity and resource policies). */
function allowStatements(node: unknown, out: Obj[] = []): Obj[] {
  if (Array.isArray(node)) node.forEach((n) => allowStatements(n, out));
  else if (node && typeof node === 'object') {
    const o = node as Obj;
    if (Array.isArray(o.Statement)) out.push(...o.Statement.filter((s: Obj) => s.Effect === 'Allow'));
    Object.values(o).forEach((v) => allowStatements(v, out));
  }
  return out;
}

/** A policy resource as text, references written `${Id.Attribute}`: what a pattern can be matched against. */
function resourceText(r: unknown): string {
  if (typeof r === 'string') return r;
  const o = r as Obj;
  if (o['Fn::GetAtt']) return `\${${o['Fn::GetAtt'].join('.')}}`;
  if (o.Ref) return `\${${o.Ref}}`;
  if (o['Fn::Join']) return o['Fn::Join'][1].map(resourceText).join(o['Fn::Join'][0]);
  return key(r);
}

const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);
const key = (v: unknown) => JSON.stringify(v);

/** Run in a fresh Node process, from the unzipped bundle alone (argv: its file URL, the function). */
const LOAD_BUNDLE = `
const m = await import(process.argv[1]);
if (typeof m.handler !== 'function') { console.error('exports no handler'); process.exit(3); }
if (process.argv[2] === 'stream' || process.argv[2] === 'replay') {
  const answer = JSON.stringify(await m.handler({ Records: [] }));
  if (answer !== '{"batchItemFailures":[]}') { console.error('empty batch answered ' + answer); process.exit(4); }
}
process.exit(0);
`;

let template: Obj;
let resources: Obj;
const ofType = (type: string): [string, Obj][] => Object.entries(resources).filter(([, r]) => r.Type === type);

before(async () => {
  OUT = await packaged('dev');
  template = JSON.parse(readFileSync(join(OUT, 'cloudformation-template-update-stack.json'), 'utf8'));
  resources = template.Resources;
});

describe('npm run package: the zips', () => {
  test('one zip per function, nothing else', () => {
    const zips = readdirSync(OUT)
      .filter((f) => f.endsWith('.zip'))
      .sort();
    assert.deepEqual(
      zips,
      Object.keys(FUNCTIONS)
        .map((f) => `${f}.zip`)
        .sort(),
    );
  });

  for (const [fn, spec] of Object.entries(FUNCTIONS)) {
    test(`${fn}.zip: at most 300 KiB, holding only its bundle, the AWS SDK inside`, () => {
      const path = join(OUT, `${fn}.zip`);
      const size = statSync(path).size;
      assert.ok(size <= MAX_ZIP_BYTES, `${fn}.zip is ${(size / 1024).toFixed(1)} KiB`);
      const entries = readZip(path);
      assert.deepEqual([...entries.keys()], [spec.entry]);
      const code = entries.get(spec.entry)!.toString('utf8');
      // Self-contained: what the bundle still imports or requires is Node's own, or optional.
      const specifiers = [...code.matchAll(/(?:\bfrom\s*|\bimport\(\s*|\brequire\(\s*)["']([^"']+)["']/g)].map((m) => m[1]!);
      const foreign = specifiers.filter((s) => !builtinModules.includes(s.replace(/^node:/, '')) && !OPTIONAL_MODULES.includes(s));
      assert.deepEqual([...new Set(foreign)], [], 'modules the bundle expects to find at run time');
      assert.ok(code.includes('DynamoDB') || fn === 'health', 'the DynamoDB client is in the bundle');
    });
  }

  test('every bundle loads on this Node and exports a handler; the stream bundles answer an empty batch', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bundles-'));
    try {
      for (const [fn, spec] of Object.entries(FUNCTIONS)) {
        const file = join(dir, fn, spec.entry);
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, readZip(join(OUT, `${fn}.zip`)).get(spec.entry)!);
        const check = spawnSync(process.execPath, ['--input-type=module', '-e', LOAD_BUNDLE, pathToFileURL(file).href, fn], {
          encoding: 'utf8',
          timeout: 60_000,
          env: {
            ...process.env,
            CACHE_MODE: 'off',
            STREAM_PARKING_TABLE: 'dynamo-redis-cache-dev-parked-invalidations',
            AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          },
        });
        assert.equal(check.status, 0, `${fn}: ${check.stderr}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('npm run package: the CloudFormation template', () => {
  test('the functions: Node 22 on arm64, in the VPC, each with its own role', () => {
    const fns = ofType('AWS::Lambda::Function')
      .map(([id]) => id)
      .sort();
    assert.deepEqual(fns, Object.keys(FUNCTIONS).map(logicalId).sort());
    for (const [fn, spec] of Object.entries(FUNCTIONS)) {
      const p = resources[logicalId(fn)].Properties;
      assert.equal(p.Runtime, 'nodejs22.x', fn);
      assert.deepEqual(p.Architectures, ['arm64'], fn);
      assert.equal(p.Handler, spec.entry.replace(/\.mjs$/, '.handler'), fn);
      assert.deepEqual(p.Role, { 'Fn::GetAtt': [spec.role, 'Arn'] }, fn);
      assert.deepEqual(p.VpcConfig.SecurityGroupIds, [{ 'Fn::GetAtt': ['LambdaSecurityGroup', 'GroupId'] }], fn);
    }
    assert.equal(resources.IamRoleLambdaExecution, undefined, 'no shared framework role');
  });

  test('least privilege: no wildcard action; DynamoDB actions only on our tables and their streams', () => {
    // Every policy of the template but the DynamoDB endpoint's: that one bounds the route tables'
    // traffic (this account's tables, template-spec.test.ts), for workloads other than ours too.
    const statements = allowStatements(Object.fromEntries(Object.entries(resources).filter(([, r]) => r.Type !== 'AWS::EC2::VPCEndpoint')));
    assert.ok(statements.length > 0);
    for (const s of statements) {
      for (const action of list(s.Action ?? [])) {
        assert.notEqual(action, '*', key(s));
        assert.ok(!/^dynamodb:.*\*/.test(action), `wildcard DynamoDB action: ${key(s)}`);
        if (/^dynamodb:/.test(action)) {
          // Only on our tables, or on their streams: never '*', nor any ARN pattern of our own making.
          for (const r of list(s.Resource)) {
            const ours = new RegExp(`^\\$\\{(${[...TABLES, PARKING].join('|')})\\.(Arn|StreamArn)\\}(/stream/\\*)?$`);
            assert.match(resourceText(r), ours, key(s));
          }
        }
      }
      assert.equal(s.NotAction, undefined, key(s));
      assert.equal(s.NotResource, undefined, key(s));
    }
  });

  test("least privilege: each function's role grants exactly its actions, on its tables or streams", () => {
    const roles = ofType('AWS::IAM::Role')
      .map(([id]) => id)
      .sort();
    assert.deepEqual(
      roles,
      Object.values(FUNCTIONS)
        .map((f) => f.role)
        .sort(),
    );
    assert.deepEqual(ofType('AWS::IAM::Policy'), []);
    assert.deepEqual(ofType('AWS::IAM::ManagedPolicy'), []);
    for (const [fn, spec] of Object.entries(FUNCTIONS)) {
      const p = resources[spec.role].Properties;
      assert.deepEqual(p.AssumeRolePolicyDocument.Statement, [
        { Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' },
      ]);
      // No managed policy: AWSLambdaVPCAccessExecutionRole would allow logs on every log group.
      assert.equal(p.ManagedPolicyArns, undefined, fn);
      const granted = new Map<string, Set<string>>();
      for (const s of allowStatements(p.Policies ?? [])) {
        for (const action of list(s.Action)) {
          const on = granted.get(action) ?? new Set();
          list(s.Resource).forEach((r) => on.add(key(r)));
          granted.set(action, on);
        }
      }
      const expected = new Map(
        Object.entries({ ...basicGrants(fn), ...spec.grants }).map(([a, rs]) => [a, new Set((rs as unknown[]).map(key))]),
      );
      assert.deepEqual(granted, expected, fn);
    }
  });

  test('HTTP API: every route is a route of ours, behind the IAM authorizer, payload 2.0', () => {
    const routes = ofType('AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);
    assert.deepEqual(routes.map((r) => r.RouteKey).sort(), Object.keys(ROUTES).sort());
    for (const r of routes) {
      assert.equal(r.AuthorizationType, 'AWS_IAM', r.RouteKey);
      const integration = r.Target['Fn::Join'][1][1].Ref;
      const target = resources[integration].Properties;
      assert.deepEqual(target.IntegrationUri, { 'Fn::GetAtt': [logicalId(ROUTES[r.RouteKey]!), 'Arn'] }, r.RouteKey);
      assert.equal(target.PayloadFormatVersion, '2.0', r.RouteKey);
    }
  });

  test("stream consumer and replayer: each table's stream, the parking table's, from the trim horizon, per-record failures, retried until the record cannot matter", () => {
    const mappings = ofType('AWS::Lambda::EventSourceMapping').map(([, m]) => m.Properties);
    assert.deepEqual(mappings.map((m) => key(m.EventSourceArn)).sort(), [...streamArns, ...parkingStream].map(key).sort());
    const env = resources.StreamLambdaFunction.Properties.Environment.Variables;
    const ttl = Number(env.CACHE_TTL_SECONDS);
    // The settings the local feed takes too (infra/local/stream-feed.ts).
    const expected = streamMappings.mappingSettings(ttl);
    for (const fn of ['StreamLambdaFunction', 'ReplayLambdaFunction', 'SweepLambdaFunction']) {
      const vars = resources[fn].Properties.Environment.Variables;
      assert.deepEqual(vars.STREAM_PARKING_TABLE, { Ref: PARKING }, fn);
      assert.equal(Number(vars.STREAM_RETRY_WINDOW_SECONDS), expected.maximumRecordAgeInSeconds, fn);
    }
    for (const m of mappings) {
      const replayer = key(m.EventSourceArn) === key(parkingStream[0]);
      assert.deepEqual(m.FunctionName, { 'Fn::GetAtt': [replayer ? 'ReplayLambdaFunction' : 'StreamLambdaFunction', 'Arn'] });
      assert.equal(m.StartingPosition, 'TRIM_HORIZON');
      assert.equal(m.BatchSize, expected.batchSize);
      assert.deepEqual(m.FunctionResponseTypes, [expected.functionResponseType]);
      assert.equal(m.BisectBatchOnFunctionError, true);
      assert.equal(m.MaximumRetryAttempts, -1);
      // Given up only once every entry the record could invalidate has expired.
      assert.equal(m.MaximumRecordAgeInSeconds, expected.maximumRecordAgeInSeconds);
      assert.ok(m.MaximumRecordAgeInSeconds > ttl, `${m.MaximumRecordAgeInSeconds} s <= TTL ${ttl} s`);
    }
    // The functions start with the deployed settings: the window covers the TTL plus lease and fence.
    const config = loadConfig({
      CACHE_MODE: 'off',
      CACHE_TTL_SECONDS: String(env.CACHE_TTL_SECONDS),
      STREAM_RETRY_WINDOW_SECONDS: String(env.STREAM_RETRY_WINDOW_SECONDS),
    });
    assert.equal(checkRetryWindow(config, declaredTables), expected.maximumRecordAgeInSeconds);
  });

  test('the sweep of the parking table runs every minute', () => {
    const rules = ofType('AWS::Events::Rule').map(([, r]) => r.Properties);
    assert.equal(rules.length, 1);
    assert.equal(rules[0]!.ScheduleExpression, 'rate(1 minute)');
    assert.equal(rules[0]!.State, 'ENABLED');
    assert.deepEqual(
      rules[0]!.Targets.map((t: Obj) => t.Arn),
      [{ 'Fn::GetAtt': ['SweepLambdaFunction', 'Arn'] }],
    );
  });

  test('tables: on-demand, streams, point-in-time recovery, stage-prefixed names', () => {
    const prefix = resources.ReadLambdaFunction.Properties.Environment.Variables.TABLE_PREFIX;
    assert.match(prefix, /^dynamo-redis-cache-dev-$/);
    for (const id of TABLES) {
      const p = resources[id].Properties;
      assert.ok(p.TableName.startsWith(prefix), p.TableName);
      assert.equal(p.BillingMode, 'PAY_PER_REQUEST');
      assert.ok(p.StreamSpecification.StreamViewType);
      assert.equal(p.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled, true);
      assert.ok(template.Outputs[`${id}StreamArn`]);
    }
    // The parking table: the replayer reads what was parked from its stream; TTL removes what it gave up.
    const parking = resources[PARKING].Properties;
    assert.equal(parking.TableName, `${prefix}parked-invalidations`);
    assert.equal(parking.BillingMode, 'PAY_PER_REQUEST');
    assert.equal(parking.StreamSpecification.StreamViewType, 'NEW_IMAGE');
    assert.deepEqual(parking.TimeToLiveSpecification, { AttributeName: 'expiresAt', Enabled: true });
  });

  test('cache: TLS and AUTH, the token a dynamic reference and in no literal', () => {
    const groups = ofType('AWS::ElastiCache::ReplicationGroup');
    assert.equal(groups.length, 3);
    const tokenRef = key({ 'Fn::Join': ['', ['{{resolve:secretsmanager:', { Ref: 'CacheAuthToken' }, ':SecretString:token}}']] });
    for (const [id, g] of groups) {
      assert.equal(g.Properties.TransitEncryptionEnabled, true, id);
      assert.equal(key(g.Properties.AuthToken), tokenRef, id);
      assert.ok(template.Outputs[`${id}Endpoint`], id);
    }
    assert.ok(resources.CacheAuthToken.Properties.GenerateSecretString, 'the token is generated, not written down');
    assert.equal(resources.CacheAuthToken.Properties.SecretString, undefined);
    for (const fn of Object.keys(FUNCTIONS)) {
      const env = resources[logicalId(fn)].Properties.Environment.Variables;
      // The token's secret, never the token: the function fetches it at cold start (lib/secrets.ts).
      assert.deepEqual(env.CACHE_AUTH_TOKEN_SECRET_ARN, { Ref: 'CacheAuthToken' }, fn);
      assert.equal(env.CACHE_AUTH_TOKEN, undefined, fn);
      assert.equal(env.CACHE_MODE, 'shards', fn);
      const nodes = key(env.CACHE_NODES);
      for (const [id] of groups) assert.ok(nodes.includes(`"${id}","PrimaryEndPoint.Address"`), `${fn}: ${id} not in CACHE_NODES`);
      assert.ok(nodes.includes('rediss://') && !nodes.includes('redis://'), `${fn}: CACHE_NODES not all TLS`);
      assert.equal(env.DYNAMODB_ENDPOINT, undefined, fn);
    }
  });

  test('network: Redis reachable from the functions on 6379, and from nothing else', () => {
    assert.equal(resources.CacheSecurityGroup.Properties.SecurityGroupIngress, undefined);
    const ingress = ofType('AWS::EC2::SecurityGroupIngress').map(([, r]) => r.Properties);
    assert.deepEqual(
      ingress.filter((r) => key(r.GroupId).includes('CacheSecurityGroup')).map(({ Description: _, ...r }) => r),
      [
        {
          GroupId: { 'Fn::GetAtt': ['CacheSecurityGroup', 'GroupId'] },
          IpProtocol: 'tcp',
          FromPort: 6379,
          ToPort: 6379,
          SourceSecurityGroupId: { 'Fn::GetAtt': ['LambdaSecurityGroup', 'GroupId'] },
        },
      ],
    );
    for (const [id, g] of ofType('AWS::ElastiCache::ReplicationGroup')) {
      assert.deepEqual(g.Properties.SecurityGroupIds, [{ 'Fn::GetAtt': ['CacheSecurityGroup', 'GroupId'] }], id);
    }
  });

  test('monitoring: a dashboard and the alarms, in the namespace the functions publish to, and no PutMetricData (EMF)', () => {
    // Prepare
    const namespaces = Object.keys(FUNCTIONS).map(
      (fn) => resources[logicalId(fn)].Properties.Environment.Variables.CACHE_METRICS_NAMESPACE,
    );
    const namespace = namespaces[0];
    const dashboards = ofType('AWS::CloudWatch::Dashboard');
    // Act
    const graphed = dashboardMetrics(dashboards[0]![1].Properties.DashboardBody['Fn::Sub']);
    const watched = alarmMetrics(resources);
    // Assess
    assert.equal(namespace, 'dynamo-redis-cache-dev');
    assert.deepEqual(new Set(namespaces), new Set([namespace]), 'every function publishes to one namespace');
    assert.equal(dashboards.length, 1);
    for (const m of [...graphed, ...watched])
      assert.ok(m.namespace === namespace || m.namespace === 'AWS/Lambda', `${m.name} in ${m.namespace}`);
    for (const name of [
      'ReadHit',
      'ReadMiss',
      'ReadBypass',
      'Latency',
      'NodesNotUp',
      'StreamAge',
      'ParkedBacklog',
      'Inconsistencies',
      'WriteRefused',
    ]) {
      assert.ok(
        graphed.some((m) => m.name === name && m.namespace === namespace),
        `the dashboard graphs ${name}`,
      );
    }
    const rows = dashboardBody(dashboards[0]![1].Properties.DashboardBody['Fn::Sub']).widgets.flatMap((w) => w.properties.metrics);
    for (const fn of Object.keys(FUNCTIONS)) {
      for (const name of ['Errors', 'Throttles']) {
        assert.ok(
          rows.some((r) => key(r) === key(['AWS/Lambda', name, 'FunctionName', logicalId(fn)])),
          `${name} of ${fn}`,
        );
      }
    }
    assert.deepEqual(watched.map((m) => m.name).sort(), [
      'Errors',
      'Inconsistencies',
      'NodesNotUp',
      'ParkedBacklog',
      'StreamAge',
      'StreamRecordsFailed',
    ]);
    assert.deepEqual(resources.StreamConsumerErrorsAlarm.Properties.Dimensions, [
      { Name: 'FunctionName', Value: { Ref: 'StreamLambdaFunction' } },
    ]);
    // No --param=alarmTopicArn: the alarms notify nobody, and the condition says so.
    assert.deepEqual(template.Conditions.NotifyAlarms, { 'Fn::Not': [{ 'Fn::Equals': ['', ''] }] });
    for (const [id, alarm] of ofType('AWS::CloudWatch::Alarm')) {
      assert.deepEqual(alarm.Properties.AlarmActions, { 'Fn::If': ['NotifyAlarms', [''], { Ref: 'AWS::NoValue' }] }, id);
    }
    const actions = allowStatements(resources).flatMap((s) => list(s.Action));
    assert.ok(!actions.some((a: string) => a.startsWith('cloudwatch:')), 'EMF needs no CloudWatch permission');
  });
});
