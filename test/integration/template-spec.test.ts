/**
 * The packaged CloudFormation template of the dev and prod stages, and of the dev stage with the
 * Serverless cache (param cacheDeployment=serverless), checked against the AWS resource specification
 * (infra/template-spec.ts) and against the deploy rules of README "Deploying it": what CloudFormation
 * itself would refuse, and what a review found that it would accept. The packages are shared with
 * package.test.ts (test/helpers/package.ts).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import preconditions from '../../infra/deploy-preconditions.cjs';
import { checkTemplate, loadSpec, type SpecIndex } from '../../infra/template-spec.ts';
import { packagedTemplate, packageParams } from '../helpers/package.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Each template checked: a stage, and the params that make it (beside those of `npm run package`). */
const VARIANTS = {
  dev: ['dev', []],
  prod: ['prod', []],
  serverless: ['dev', ['--param=cacheDeployment=serverless']],
} as const satisfies Record<string, readonly [string, readonly string[]]>;
const STAGES = Object.keys(VARIANTS) as (keyof typeof VARIANTS)[];

// biome-ignore lint/suspicious/noExplicitAny: a template is untyped JSON
type Obj = Record<string, any>;

const templates: Record<string, Obj> = {};
let spec: SpecIndex;

before(async () => {
  // One package at a time (two osls runs in one service folder share serverless-esbuild's work
  // folder), while the specification loads.
  const packages = (async () => {
    for (const stage of STAGES) templates[stage] = await packagedTemplate(VARIANTS[stage][0], [...VARIANTS[stage][1]]);
  })();
  [spec] = await Promise.all([loadSpec(), packages]);
});

const resourcesOf = (t: Obj, type: string): [string, Obj][] => Object.entries(t.Resources as Obj).filter(([, r]) => r.Type === type);
const copy = (t: Obj): Obj => structuredClone(t);

for (const stage of STAGES) {
  describe(`the ${stage} template against the AWS resource specification`, () => {
    test('every resource, property, value and reference is valid', () => {
      assert.deepEqual(checkTemplate(templates[stage]!, spec), []);
    });
  });
}

describe('the check catches planted mistakes', () => {
  const fn = (t: Obj): Obj => resourcesOf(t, 'AWS::Lambda::Function')[0]![1];
  const plants: [string, (t: Obj) => void, RegExp, ('dev' | 'serverless')?][] = [
    [
      'an unknown resource type',
      (t) => void (t.Resources.UsersTable.Type = 'AWS::DynamoDB::Tabel'),
      /resource type 'AWS::DynamoDB::Tabel' does not exist/,
    ],
    ['an unknown top-level property', (t) => void (fn(t).Properties.Memory = 512), /unknown property 'Memory'/],
    [
      'an unknown nested property',
      (t) => void (t.Resources.UsersTable.Properties.StreamSpecification.StreamViewTyp = 'KEYS_ONLY'),
      /StreamSpecification: unknown property 'StreamViewTyp'/,
    ],
    [
      'a missing required property',
      (t) => void delete t.Resources.UsersTable.Properties.KeySchema,
      /required property 'KeySchema' is missing/,
    ],
    [
      'a missing required nested property',
      (t) => void delete t.Resources.UsersTable.Properties.KeySchema[0].KeyType,
      /KeySchema\[0\]: required property 'KeyType'/,
    ],
    ['a string for an integer', (t) => void (fn(t).Properties.MemorySize = 'lots'), /MemorySize: expected an integer/],
    [
      'an object for a list',
      (t) => void (t.Resources.UsersTable.Properties.KeySchema = { AttributeName: 'userId' }),
      /KeySchema: expected a list/,
    ],
    [
      'a value outside the allowed ones',
      (t) => void (resourcesOf(t, 'AWS::Logs::LogGroup')[0]![1].Properties.RetentionInDays = 31),
      /RetentionInDays: 31 is not one of/,
    ],
    ['a Ref to nothing', (t) => void (fn(t).Properties.Role = { Ref: 'NoSuchRole' }), /Ref to 'NoSuchRole'/],
    [
      'a GetAtt of a missing resource',
      (t) => void (fn(t).Properties.Role = { 'Fn::GetAtt': ['NoSuchRole', 'Arn'] }),
      /Fn::GetAtt of 'NoSuchRole', which is not a resource/,
    ],
    [
      'a GetAtt of a missing attribute',
      (t) => void (fn(t).Properties.Role = { 'Fn::GetAtt': ['ReadFunctionRole', 'Name'] }),
      /has no attribute 'Name'/,
    ],
    [
      'a Serverless cache without its engine',
      (t) => void delete t.Resources.ServerlessCache.Properties.Engine,
      /ServerlessCache.Properties: required property 'Engine' is missing/,
      'serverless',
    ],
    [
      'a GetAtt of an attribute the Serverless cache does not have',
      (t) => void (fn(t).Properties.Environment.Variables.CACHE_NODES = { 'Fn::GetAtt': ['ServerlessCache', 'PrimaryEndPoint.Address'] }),
      /ServerlessCache' has no attribute 'PrimaryEndPoint.Address'/,
      'serverless',
    ],
    ['a DependsOn on nothing', (t) => void (fn(t).DependsOn = ['Nothing']), /DependsOn: 'Nothing' is not a resource/],
    [
      'an undeclared condition',
      (t) => void (t.Resources.UsersTable.Condition = 'NoSuchCondition'),
      /Condition: 'NoSuchCondition' is not declared/,
    ],
    [
      'a Sub naming nothing',
      (t) => void (fn(t).Properties.Description = { 'Fn::Sub': 'x-${NoSuchThing}' }),
      /Fn::Sub names '\$\{NoSuchThing\}'/,
    ],
  ];
  for (const [what, plant, expected, variant] of plants) {
    test(what, () => {
      const t = copy(templates[variant ?? 'dev']!);
      plant(t);
      const problems = checkTemplate(t, spec);
      assert.ok(
        problems.some((p) => expected.test(p)),
        `no problem matched ${expected}: ${problems.join('; ') || 'none'}`,
      );
    });
  }
});

describe('deploy rules (README "Deploying it")', () => {
  test('the replication groups run under an explicit parameter group that pins volatile-lru', () => {
    for (const stage of ['dev', 'prod'] as const) {
      const t = templates[stage]!;
      const groups = resourcesOf(t, 'AWS::ElastiCache::ParameterGroup');
      assert.equal(groups.length, 1, stage);
      const [groupId, group] = groups[0]!;
      assert.equal(group.Properties.Properties['maxmemory-policy'], 'volatile-lru');
      const shards = resourcesOf(t, 'AWS::ElastiCache::ReplicationGroup');
      assert.ok(shards.length > 0);
      for (const [id, g] of shards) assert.deepEqual(g.Properties.CacheParameterGroupName, { Ref: groupId }, `${stage} ${id}`);
    }
  });

  test('no security group lets anything out to everywhere', () => {
    for (const stage of STAGES) {
      const t = templates[stage]!;
      const groups = resourcesOf(t, 'AWS::EC2::SecurityGroup');
      assert.ok(groups.length > 0);
      for (const [id, g] of groups) {
        // A group without an egress list keeps AWS's default rule: all traffic to 0.0.0.0/0.
        assert.ok(
          Array.isArray(g.Properties.SecurityGroupEgress) && g.Properties.SecurityGroupEgress.length > 0,
          `${stage} ${id} keeps the default egress`,
        );
        for (const rule of g.Properties.SecurityGroupEgress) {
          assert.ok(!(rule.CidrIp === '0.0.0.0/0' || rule.CidrIpv6 === '::/0'), `${stage} ${id}: ${JSON.stringify(rule)}`);
        }
      }
      // Egress only inline: a separate rule is dropped when the inline list is updated.
      assert.deepEqual(resourcesOf(t, 'AWS::EC2::SecurityGroupEgress'), [], stage);
    }
  });

  test('the invalidation path cannot be starved: reserved concurrency for its functions, a throttled API stage', () => {
    for (const stage of STAGES) {
      const r = templates[stage]!.Resources;
      for (const fn of ['StreamLambdaFunction', 'ReplayLambdaFunction', 'SweepLambdaFunction']) {
        assert.ok(r[fn].Properties.ReservedConcurrentExecutions >= 1, `${stage} ${fn}`);
      }
      for (const fn of ['ReadLambdaFunction', 'WriteLambdaFunction'])
        assert.equal(r[fn].Properties.ReservedConcurrentExecutions, undefined, `${stage} ${fn}`);
      const settings = r.HttpApiStage.Properties.DefaultRouteSettings;
      assert.ok(settings.ThrottlingRateLimit > 0 && settings.ThrottlingBurstLimit > 0, stage);
      assert.match(r.HttpApiStage.Properties.AccessLogSettings.Format, /\$context\.identity\.userArn/);
    }
  });

  test('every stream mapping starts at TRIM_HORIZON and reports what it gives up to a queue; the replayer sees only what was parked', () => {
    for (const stage of STAGES) {
      const mappings = resourcesOf(templates[stage]!, 'AWS::Lambda::EventSourceMapping');
      assert.ok(mappings.length >= 2);
      for (const [id, m] of mappings) {
        assert.equal(m.Properties.StartingPosition, 'TRIM_HORIZON', `${stage} ${id}`);
        assert.deepEqual(
          m.Properties.DestinationConfig,
          { OnFailure: { Destination: { 'Fn::GetAtt': ['StreamRecordsGivenUpQueue', 'Arn'] } } },
          `${stage} ${id}`,
        );
      }
      const replay = mappings.find(([, m]) => JSON.stringify(m.Properties.EventSourceArn).includes('ParkedInvalidationsTable'));
      assert.ok(replay);
      const pattern = JSON.parse(replay[1].Properties.FilterCriteria.Filters[0].Pattern);
      assert.deepEqual(pattern.eventName, ['INSERT', 'MODIFY']);
    }
  });

  test('no function carries a secret in its configuration: the ARNs only, resolved at cold start', () => {
    for (const stage of STAGES) {
      for (const [id, f] of resourcesOf(templates[stage]!, 'AWS::Lambda::Function')) {
        const vars = f.Properties.Environment.Variables;
        assert.ok(!JSON.stringify(vars).includes('{{resolve:'), `${stage} ${id}: a dynamic reference in its environment`);
        assert.equal(vars.CACHE_AUTH_TOKEN, undefined, `${stage} ${id}`);
        assert.equal(vars.CACHE_LOG_KEYS_SECRET, undefined, `${stage} ${id}`);
        assert.deepEqual(vars.CACHE_AUTH_TOKEN_SECRET_ARN, { Ref: 'CacheAuthToken' }, `${stage} ${id}`);
        assert.deepEqual(vars.CACHE_LOG_KEYS_SECRET_SECRET_ARN, { Ref: 'LogKeysSecret' }, `${stage} ${id}`);
      }
    }
  });

  test('the functions reach Secrets Manager through an interface endpoint, on 443 only', () => {
    const t = templates.dev!;
    const endpoint = resourcesOf(t, 'AWS::EC2::VPCEndpoint').find(([, e]) => e.Properties.VpcEndpointType === 'Interface');
    assert.ok(endpoint, 'no interface endpoint');
    assert.equal(endpoint[1].Properties.PrivateDnsEnabled, true);
    const egress = t.Resources.LambdaSecurityGroup.Properties.SecurityGroupEgress as Obj[];
    assert.deepEqual(egress.map((r) => [r.FromPort, r.ToPort]).sort(), [
      [443, 443],
      [443, 443],
      [6379, 6379],
    ]);
  });

  test('the DynamoDB gateway endpoint, when created, has a policy limited to this account', () => {
    const endpoints = resourcesOf(templates.dev!, 'AWS::EC2::VPCEndpoint').filter(([, e]) => e.Properties.VpcEndpointType === 'Gateway');
    assert.equal(endpoints.length, 1);
    const doc = endpoints[0]![1].Properties.PolicyDocument;
    assert.ok(doc, 'no endpoint policy');
    assert.match(JSON.stringify(doc.Statement[0].Resource), /AWS::AccountId/);
  });
});

describe('the cache of each deployment (param cacheDeployment: infra/cache.yml, infra/cache-serverless.yml)', () => {
  const env = (t: Obj): Obj[] => resourcesOf(t, 'AWS::Lambda::Function').map(([, f]) => f.Properties.Environment.Variables);
  const lambdaSg = { 'Fn::GetAtt': ['LambdaSecurityGroup', 'GroupId'] };
  const cacheSg = { 'Fn::GetAtt': ['CacheSecurityGroup', 'GroupId'] };
  const tokenRef = { 'Fn::Join': ['', ['{{resolve:secretsmanager:', { Ref: 'CacheAuthToken' }, ':SecretString:token}}']] };

  test('groups (the default): three replication groups in shards mode, no Serverless cache, no user', () => {
    for (const stage of ['dev', 'prod'] as const) {
      const t = templates[stage]!;
      assert.equal(resourcesOf(t, 'AWS::ElastiCache::ReplicationGroup').length, 3, stage);
      assert.deepEqual(resourcesOf(t, 'AWS::ElastiCache::ServerlessCache'), [], stage);
      assert.deepEqual(resourcesOf(t, 'AWS::ElastiCache::User'), [], stage);
      for (const vars of env(t)) {
        assert.equal(vars.CACHE_MODE, 'shards', stage);
        assert.equal(vars.CACHE_AUTH_USER, '', stage);
      }
    }
  });

  test('serverless: one Valkey Serverless cache in cluster mode, its endpoint over TLS, nothing of the groups', () => {
    const t = templates.serverless!;
    const caches = resourcesOf(t, 'AWS::ElastiCache::ServerlessCache');
    assert.equal(caches.length, 1);
    const [id, cache] = caches[0]!;
    assert.equal(cache.Properties.Engine, 'valkey');
    assert.deepEqual(cache.Properties.SecurityGroupIds, [cacheSg]);
    assert.deepEqual(cache.Properties.SubnetIds, { 'Fn::Split': [',', 'subnet-00000000000000000,subnet-11111111111111111'] });
    for (const type of ['AWS::ElastiCache::ReplicationGroup', 'AWS::ElastiCache::ParameterGroup'])
      assert.deepEqual(resourcesOf(t, type), [], type);
    // The cache is reached only through its endpoint, TLS always (the service has no other way).
    for (const vars of env(t)) {
      assert.equal(vars.CACHE_MODE, 'cluster');
      assert.deepEqual(vars.CACHE_NODES, {
        'Fn::Join': ['', ['rediss://', { 'Fn::GetAtt': [id, 'Endpoint.Address'] }, ':', { 'Fn::GetAtt': [id, 'Endpoint.Port'] }]],
      });
      assert.deepEqual(vars.CACHE_AUTH_TOKEN_SECRET_ARN, { Ref: 'CacheAuthToken' });
    }
  });

  test("serverless: access by user group only: default switched off, the functions' user with the secret as its password", () => {
    const t = templates.serverless!;
    const [, cache] = resourcesOf(t, 'AWS::ElastiCache::ServerlessCache')[0]!;
    const groupId = cache.Properties.UserGroupId.Ref as string;
    const group = t.Resources[groupId];
    assert.equal(group.Type, 'AWS::ElastiCache::UserGroup');
    const users = (group.Properties.UserIds as Obj[]).map((r) => t.Resources[r.Ref]);
    assert.deepEqual(
      users.map((u) => u.Type),
      ['AWS::ElastiCache::User', 'AWS::ElastiCache::User'],
    );
    const byName = Object.fromEntries(users.map((u) => [u.Properties.UserName, u.Properties]));
    assert.deepEqual(Object.keys(byName).sort(), ['default', 'functions']);
    assert.match(byName.default.AccessString, /^off /);
    assert.equal(byName.default.Passwords, undefined);
    assert.equal(byName.functions.AuthenticationMode.Type, 'password');
    assert.deepEqual(byName.functions.AuthenticationMode.Passwords, [tokenRef]);
    for (const [rid, r] of Object.entries(t.Resources as Obj))
      assert.equal(r.Properties?.AuthToken, undefined, `${rid}: an AUTH token, which the service takes none of`);
    for (const vars of env(t)) assert.equal(vars.CACHE_AUTH_USER, 'functions');
  });

  test('network, either way: the cache admits the functions on 6379 only, and the functions reach it on 6379 only', () => {
    for (const stage of STAGES) {
      const t = templates[stage]!;
      const ingress = resourcesOf(t, 'AWS::EC2::SecurityGroupIngress')
        .map(([, r]) => r.Properties)
        .filter((r) => JSON.stringify(r.GroupId).includes('CacheSecurityGroup'));
      assert.deepEqual(
        ingress.map(({ Description: _, ...r }) => r),
        [{ GroupId: cacheSg, IpProtocol: 'tcp', FromPort: 6379, ToPort: 6379, SourceSecurityGroupId: lambdaSg }],
        stage,
      );
      assert.equal(t.Resources.CacheSecurityGroup.Properties.SecurityGroupIngress, undefined, stage);
      const toCache = (t.Resources.LambdaSecurityGroup.Properties.SecurityGroupEgress as Obj[]).filter(
        (r) => JSON.stringify(r.DestinationSecurityGroupId) === JSON.stringify(cacheSg),
      );
      assert.deepEqual(
        toCache.map((r) => [r.IpProtocol, r.FromPort, r.ToPort]),
        [['tcp', 6379, 6379]],
        stage,
      );
    }
  });

  test('an unknown cacheDeployment fails the package', () => {
    const out = join(ROOT, '.tmp-package-unknown-cache');
    const run = spawnSync('npx', ['osls', 'package', ...packageParams(), '--param=cacheDeployment=nodes', '--package', out], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 300_000,
    });
    rmSync(out, { recursive: true, force: true });
    assert.notEqual(run.status, 0);
    assert.match(run.stdout + run.stderr, /custom\.cacheDeployment/);
  });
});

describe('deploy preconditions, checked at package time (infra/deploy-preconditions.cjs)', () => {
  const good = {
    subnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
    dynamodbEndpointRouteTableIds: 'rtb-0123456789abcdef0',
    subnetsReachDynamoDb: 'false',
    dynamodbPrefixListId: 'pl-02cd2c6b',
  };
  test('a deploy with two subnets, a route to DynamoDB and the prefix list goes ahead', () => {
    assert.deepEqual(preconditions.problems(good), []);
    assert.deepEqual(preconditions.problems({ ...good, dynamodbEndpointRouteTableIds: '', subnetsReachDynamoDb: 'true' }), []);
  });
  const cases: [string, Record<string, string>, RegExp][] = [
    ['one subnet', { subnetIds: 'subnet-0123456789abcdef0' }, /subnetIds: name two private subnets or more/],
    ['the same subnet twice', { subnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef0' }, /subnetIds: name two/],
    ['no route to DynamoDB', { dynamodbEndpointRouteTableIds: '' }, /would not reach DynamoDB/],
    ['a malformed route table', { dynamodbEndpointRouteTableIds: 'rt-1' }, /'rt-1' is not a route table id/],
    ['no prefix list', { dynamodbPrefixListId: '' }, /dynamodbPrefixListId: the id of the managed prefix list/],
  ];
  for (const [what, change, expected] of cases) {
    test(`refused: ${what}`, () => {
      const found = preconditions.problems({ ...good, ...change });
      assert.ok(
        found.some((p: string) => expected.test(p)),
        found.join('; '),
      );
    });
  }
  test('npm run package fails with the message when a precondition is not met', () => {
    const run = spawnSync(
      'npx',
      [
        'osls',
        'package',
        '--param=vpcId=vpc-0',
        '--param=subnetIds=subnet-0123456789abcdef0',
        '--package',
        join(ROOT, '.tmp-package-refused'),
      ],
      {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 300_000,
      },
    );
    rmSync(join(ROOT, '.tmp-package-refused'), { recursive: true, force: true });
    assert.notEqual(run.status, 0);
    assert.match(run.stdout + run.stderr, /deploy preconditions/);
    assert.match(run.stdout + run.stderr, /subnetIds: name two private subnets or more/);
    assert.match(run.stdout + run.stderr, /dynamodbPrefixListId/);
  });
});
