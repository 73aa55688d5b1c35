import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig, parseShardMap, VIRTUAL_SHARDS } from '../../lib/index.ts';
import { mapWaitMs } from '../../lib/config.ts';
import { clientOptions } from '../../lib/cache/node.ts';
import { redactUrl } from '../../lib/log.ts';

/** The minimal environment for the default mode (shards). */
const BASE = { CACHE_NODES: 'redis://127.0.0.1:6379' } as const;

/** Asserts that `fn` throws a ConfigError naming `variable`. */
function throwsConfig(fn: () => unknown, variable: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    assert.equal(e.variable, variable);
    assert.equal(e.code, 'ConfigError');
    assert.ok(e.message.startsWith(`${variable}: `), e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe('loadConfig: defaults', () => {
  test('only CACHE_NODES set: every other setting has its documented default', () => {
    const c = loadConfig({ ...BASE });
    assert.equal(c.cache.mode, 'shards');
    assert.deepEqual(c.cache.nodes, ['redis://127.0.0.1:6379']);
    assert.equal(c.cache.shardMap, undefined);
    assert.equal(c.cache.checkIntervalSeconds, 60);
    assert.equal(c.cache.startCycles, 2);
    assert.equal(c.cache.writePolicy, 'available');
    assert.equal(c.cache.ttlSeconds, 3600);
    assert.equal(c.cache.commandTimeoutMs, 250);
    assert.equal(c.cache.connectTimeoutMs, 1000);
    assert.equal(c.cache.leaseMs, 2000);
    assert.equal(c.cache.dirtyKeysMax, 10_000);
    assert.equal(c.cache.mapRefreshSeconds, 10);
    assert.equal(c.cache.mapExpirySeconds, 3600);
    assert.equal(mapWaitMs(c), 15_250, 'W: the refresh period, the fence time (4.25 s) and a second');
    assert.equal(c.store.endpoint, undefined);
    assert.equal(c.store.region, 'us-east-1');
    assert.equal(c.store.tablePrefix, '');
    assert.equal(c.store.timeoutMs, 1000);
    assert.equal(c.store.maxAttempts, 3);
    assert.equal(c.store.deadlineMs, 3000);
    assert.equal(c.store.localCredentials, undefined);
  });

  test('empty and blank values fall back to the defaults', () => {
    const c = loadConfig({
      ...BASE,
      CACHE_MODE: '',
      CACHE_CHECK_INTERVAL_SECONDS: '   ',
      CACHE_START_CYCLES: '',
      CACHE_WRITE_POLICY: ' ',
      CACHE_SHARD_MAP: '',
      DYNAMODB_ENDPOINT: '  ',
    });
    assert.equal(c.cache.mode, 'shards');
    assert.equal(c.cache.checkIntervalSeconds, 60);
    assert.equal(c.cache.startCycles, 2);
    assert.equal(c.cache.writePolicy, 'available');
    assert.equal(c.cache.shardMap, undefined);
    assert.equal(c.store.endpoint, undefined);
  });

  test('explicit values are read (numbers trimmed, choices case-insensitive)', () => {
    const c = loadConfig({
      CACHE_NODES: ' redis://a:1 , rediss://b:2 ',
      CACHE_MODE: 'SHARDS',
      CACHE_CHECK_INTERVAL_SECONDS: ' 5 ',
      CACHE_START_CYCLES: '0',
      CACHE_WRITE_POLICY: 'Strict',
      CACHE_TTL_SECONDS: '10',
      CACHE_SHARD_MAP: '0-49:1,50-99:0',
      DYNAMODB_ENDPOINT: 'http://localhost:8000',
      AWS_REGION: 'eu-west-1',
      TABLE_PREFIX: 'dev-',
    });
    assert.deepEqual(c.cache.nodes, ['redis://a:1', 'rediss://b:2']);
    assert.equal(c.cache.checkIntervalSeconds, 5);
    assert.equal(c.cache.startCycles, 0);
    assert.equal(c.cache.writePolicy, 'strict');
    assert.equal(c.cache.ttlSeconds, 10);
    assert.equal(c.cache.shardMap?.[0], 1);
    assert.equal(c.cache.shardMap?.[99], 0);
    assert.equal(c.store.endpoint, 'http://localhost:8000');
    assert.equal(c.store.region, 'eu-west-1');
    assert.equal(c.store.tablePrefix, 'dev-');
    // A local endpoint without credentials in the environment gets placeholder ones; with them, none.
    assert.deepEqual(c.store.localCredentials, { accessKeyId: 'local', secretAccessKey: 'local' });
    const withKeys = loadConfig({ ...BASE, DYNAMODB_ENDPOINT: 'http://localhost:8000', AWS_ACCESS_KEY_ID: 'AKIA' });
    assert.equal(withKeys.store.localCredentials, undefined);
  });

  test('AWS_DEFAULT_REGION is used when AWS_REGION is not set', () => {
    assert.equal(loadConfig({ ...BASE, AWS_DEFAULT_REGION: 'ap-south-1' }).store.region, 'ap-south-1');
    assert.equal(loadConfig({ ...BASE, AWS_REGION: 'eu-west-1', AWS_DEFAULT_REGION: 'ap-south-1' }).store.region, 'eu-west-1');
  });

  test('CACHE_MODE=off needs no nodes; cluster mode ignores CACHE_SHARD_MAP', () => {
    const off = loadConfig({ CACHE_MODE: 'off' });
    assert.equal(off.cache.mode, 'off');
    assert.deepEqual(off.cache.nodes, []);
    assert.equal(off.cache.shardMap, undefined);
    const cluster = loadConfig({ CACHE_MODE: 'cluster', CACHE_NODES: 'redis://cfg:6379', CACHE_SHARD_MAP: 'not even parsed' });
    assert.equal(cluster.cache.mode, 'cluster');
    assert.equal(cluster.cache.shardMap, undefined);
  });

  test('boundaries of the numeric ranges are accepted', () => {
    const lo = loadConfig({ ...BASE, CACHE_CHECK_INTERVAL_SECONDS: '1', CACHE_START_CYCLES: '0' });
    assert.equal(lo.cache.checkIntervalSeconds, 1);
    assert.equal(lo.cache.startCycles, 0);
    const hi = loadConfig({ ...BASE, CACHE_CHECK_INTERVAL_SECONDS: '86400', CACHE_START_CYCLES: '1000' });
    assert.equal(hi.cache.checkIntervalSeconds, 86400);
    assert.equal(hi.cache.startCycles, 1000);
  });
});

describe('loadConfig: every bad value is a ConfigError naming its variable', () => {
  const numeric: [variable: string, bad: string[]][] = [
    ['CACHE_CHECK_INTERVAL_SECONDS', ['abc', '-1', '1.5', '1e3', '0x10', '5s', '0', '86401', '99999999999999999999']],
    ['CACHE_START_CYCLES', ['two', '-1', '2.0', '1001']],
    ['CACHE_TTL_SECONDS', ['x', '0', String(30 * 86400 + 1)]],
    ['CACHE_COMMAND_TIMEOUT_MS', ['fast', '0', '60001']],
    ['CACHE_CONNECT_TIMEOUT_MS', ['0', '60001']],
    ['CACHE_LEASE_MS', ['9', '60001']],
    ['CACHE_DIRTY_KEYS_MAX', ['0', '10000001']],
    ['CACHE_MAP_REFRESH_SECONDS', ['0', '3601', 'ten']],
    ['CACHE_MAP_EXPIRY_SECONDS', ['0', '29', String(30 * 86400 + 1)]],
    ['DYNAMODB_TIMEOUT_MS', ['99', '60001', 'ten']],
    ['DYNAMODB_MAX_ATTEMPTS', ['0', '11', '3x']],
  ];
  for (const [variable, values] of numeric) {
    test(`${variable}: non-numeric and out-of-range values`, () => {
      for (const v of values) throwsConfig(() => loadConfig({ ...BASE, [variable]: v }), variable);
    });
  }

  test('CACHE_MAP_EXPIRY_SECONDS: below three refresh periods', () => {
    throwsConfig(
      () => loadConfig({ ...BASE, CACHE_MAP_REFRESH_SECONDS: '20', CACHE_MAP_EXPIRY_SECONDS: '59' }),
      'CACHE_MAP_EXPIRY_SECONDS',
      /at least 3 × CACHE_MAP_REFRESH_SECONDS \(60\)/,
    );
    assert.equal(loadConfig({ ...BASE, CACHE_MAP_REFRESH_SECONDS: '20', CACHE_MAP_EXPIRY_SECONDS: '60' }).cache.mapExpirySeconds, 60);
  });

  test('CACHE_MODE: an unknown mode', () => {
    for (const v of ['redis', 'cluster,shards', 'none', '0']) {
      throwsConfig(() => loadConfig({ ...BASE, CACHE_MODE: v }), 'CACHE_MODE', /shards, cluster, off/);
    }
  });

  test('CACHE_WRITE_POLICY: an unknown policy', () => {
    for (const v of ['always', 'strict!', 'avail']) {
      throwsConfig(() => loadConfig({ ...BASE, CACHE_WRITE_POLICY: v }), 'CACHE_WRITE_POLICY');
    }
  });

  test('CACHE_NODES: missing in shards and cluster mode', () => {
    throwsConfig(() => loadConfig({}), 'CACHE_NODES', /required/);
    throwsConfig(() => loadConfig({ CACHE_NODES: '  ' }), 'CACHE_NODES', /required/);
    throwsConfig(() => loadConfig({ CACHE_MODE: 'shards' }), 'CACHE_NODES');
    throwsConfig(() => loadConfig({ CACHE_MODE: 'cluster' }), 'CACHE_NODES');
  });

  test('CACHE_NODES: an entry that is not a redis:// or rediss:// URL', () => {
    for (const v of [
      'http://127.0.0.1:6379',
      'https://cache.example.com',
      '127.0.0.1:6379',
      'not a url',
      'redis://a:1,,redis://b:2',
      'redis://a:1,tcp://b:2',
      'redis://',
    ]) {
      throwsConfig(() => loadConfig({ CACHE_NODES: v }), 'CACHE_NODES');
    }
  });

  test('CACHE_SHARD_MAP: gaps, overlaps, out-of-range shards and nodes, bad syntax', () => {
    const two = { CACHE_NODES: 'redis://a:1,redis://b:2' };
    for (const v of [
      '0-48:0,50-99:1', // gap at 49
      '0-49:0', // 50..99 unmapped
      '1-99:0', // 0 unmapped
      '0-50:0,50-99:1', // 50 twice
      '0-99:0,10:1', // overlap with a single shard
      '0-49:0,50-99:2', // node 2 of 2
      '0-100:0', // shard 100 does not exist
      '50-0:0', // from > to
      '0-49,50-99:1', // no node
      'a-b:0',
      '0-49:0;50-99:1',
      '-1-99:0',
    ]) {
      throwsConfig(() => loadConfig({ ...two, CACHE_SHARD_MAP: v }), 'CACHE_SHARD_MAP');
    }
  });

  test('DYNAMODB_ENDPOINT: not a URL', () => {
    for (const v of ['not a url', 'http//localhost:8000', '://x']) {
      throwsConfig(() => loadConfig({ ...BASE, DYNAMODB_ENDPOINT: v }), 'DYNAMODB_ENDPOINT');
    }
  });

  test('TABLE_PREFIX: characters DynamoDB table names cannot hold', () => {
    for (const v of ['dev:', 'a b', 'é-']) throwsConfig(() => loadConfig({ ...BASE, TABLE_PREFIX: v }), 'TABLE_PREFIX');
  });

  test('a bad CACHE_NODES is reported even in off mode (the variable is still read)', () => {
    throwsConfig(() => loadConfig({ CACHE_MODE: 'off', CACHE_NODES: 'http://x' }), 'CACHE_NODES');
  });
});

describe('parseShardMap', () => {
  test("'0-49:0,50-99:1' over two nodes", () => {
    const map = parseShardMap('0-49:0,50-99:1', 2);
    assert.ok(map);
    assert.equal(map.length, VIRTUAL_SHARDS);
    assert.deepEqual(map, [...Array<number>(50).fill(0), ...Array<number>(50).fill(1)]);
  });

  test('single shards, ranges in any order, whitespace around parts', () => {
    const map = parseShardMap(' 50-99:0 , 0:2, 1-49:1 ', 3);
    assert.ok(map);
    assert.equal(map[0], 2);
    assert.equal(map[1], 1);
    assert.equal(map[49], 1);
    assert.equal(map[50], 0);
    assert.equal(map[99], 0);
  });

  test('unset or blank: no explicit map', () => {
    assert.equal(parseShardMap(undefined, 2), undefined);
    assert.equal(parseShardMap('', 2), undefined);
    assert.equal(parseShardMap('  ', 2), undefined);
  });

  test('a node index beyond the node count', () => {
    throwsConfig(() => parseShardMap('0-99:1', 1), 'CACHE_SHARD_MAP', /node 1/);
  });
});

describe('loadConfig: secrets', () => {
  const TOKEN = 's3cr3t-token';

  test('a token or a URL password for a plain redis:// node is refused (it would cross the network in clear)', () => {
    const noToken = (e: unknown): boolean => e instanceof ConfigError && !e.message.includes(TOKEN);
    throwsConfig(() => loadConfig({ CACHE_NODES: 'redis://cache:6379', CACHE_AUTH_TOKEN: TOKEN }), 'CACHE_AUTH_TOKEN', /rediss:\/\//);
    throwsConfig(() => loadConfig({ CACHE_NODES: `redis://:${TOKEN}@cache:6379` }), 'CACHE_NODES', /entry 1 \(redis:\/\/cache:6379\)/);
    throwsConfig(() => loadConfig({ CACHE_NODES: `rediss://a:1,redis://app:${TOKEN}@b:2` }), 'CACHE_NODES', /entry 2/);
    throwsConfig(() => loadConfig({ CACHE_MODE: 'cluster', CACHE_NODES: 'redis://cfg:6379', CACHE_AUTH_TOKEN: TOKEN }), 'CACHE_AUTH_TOKEN');
    assert.throws(() => loadConfig({ CACHE_NODES: `redis://:${TOKEN}@cache:6379` }), noToken);
    assert.throws(() => loadConfig({ CACHE_NODES: 'redis://cache:6379', CACHE_AUTH_TOKEN: TOKEN }), noToken);
  });

  test('over TLS, without credentials, with CACHE_ALLOW_PLAIN_AUTH=1 (a local stack) or with no cache, the same settings are accepted', () => {
    assert.equal(loadConfig({ CACHE_NODES: 'rediss://cache:6379', CACHE_AUTH_TOKEN: TOKEN }).cache.authToken, TOKEN);
    assert.equal(loadConfig({ CACHE_NODES: `rediss://:${TOKEN}@cache:6379` }).cache.nodes.length, 1);
    assert.equal(loadConfig({ CACHE_NODES: 'redis://cache:6379', CACHE_AUTH_USER: 'app' }).cache.authUser, 'app');
    for (const allow of ['1', 'true', ' TRUE ']) {
      const c = loadConfig({ CACHE_NODES: 'redis://cache:6379', CACHE_AUTH_TOKEN: TOKEN, CACHE_ALLOW_PLAIN_AUTH: allow });
      assert.equal(c.cache.authToken, TOKEN);
    }
    assert.equal(loadConfig({ CACHE_MODE: 'off', CACHE_AUTH_TOKEN: TOKEN }).cache.mode, 'off');
    for (const off of ['0', 'false', '']) {
      throwsConfig(
        () => loadConfig({ CACHE_NODES: 'redis://cache:6379', CACHE_AUTH_TOKEN: TOKEN, CACHE_ALLOW_PLAIN_AUTH: off }),
        'CACHE_AUTH_TOKEN',
      );
    }
    for (const bad of ['yes', '2', 'on']) {
      throwsConfig(() => loadConfig({ ...BASE, CACHE_ALLOW_PLAIN_AUTH: bad }), 'CACHE_ALLOW_PLAIN_AUTH');
      throwsConfig(() => loadConfig({ CACHE_MODE: 'off', CACHE_ALLOW_PLAIN_AUTH: bad }), 'CACHE_ALLOW_PLAIN_AUTH');
    }
  });

  test('a malformed node URL is reported without its user or password', () => {
    for (const url of [
      `redis://:${TOKEN}@cache:notaport`,
      `rediss://app:${TOKEN}@[cache:6379`,
      `redis://app:${TOKEN}@cache:6379:6380`,
      `rediss://user:pa@ss${TOKEN}@ho st:6379`,
    ]) {
      throwsConfig(() => loadConfig({ CACHE_NODES: url }), 'CACHE_NODES', /is not a URL/);
      assert.throws(
        () => loadConfig({ CACHE_NODES: url }),
        (e: unknown) => e instanceof ConfigError && !e.message.includes(TOKEN) && !e.message.includes('app:'),
        url,
      );
    }
    assert.throws(
      () => loadConfig({ ...BASE, DYNAMODB_ENDPOINT: `ftp://user:${TOKEN}@dynamo` }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'DYNAMODB_ENDPOINT' && !e.message.includes(TOKEN),
    );
  });
});

describe('clientOptions: credentials as the README says', () => {
  const settings = { checkIntervalMs: 1000, startCycles: 0, commandTimeoutMs: 100, connectTimeoutMs: 100, dirtyKeysMax: 10 };
  const creds = (url: string, env: { authUser?: string; authToken?: string } = {}) => {
    const o = clientOptions({ ...settings, ...env }, new URL(url));
    return { username: o.username, password: o.password, tls: o.tls !== undefined };
  };

  test("the URL's user and password win; what the URL lacks comes from CACHE_AUTH_USER / CACHE_AUTH_TOKEN", () => {
    const env = { authUser: 'envuser', authToken: 'envtoken' };
    assert.deepEqual(creds('rediss://default@h:6379', env), { username: 'default', password: 'envtoken', tls: true });
    assert.deepEqual(creds('rediss://:urlpass@h:6379', env), { username: 'envuser', password: 'urlpass', tls: true });
    assert.deepEqual(creds('rediss://u%40x:p%3Aq@h:6379', env), { username: 'u@x', password: 'p:q', tls: true });
    assert.deepEqual(creds('rediss://h:6379', env), { username: 'envuser', password: 'envtoken', tls: true });
    assert.deepEqual(creds('redis://h:6379'), { username: undefined, password: undefined, tls: false });
  });

  test('redactUrl: parsed URLs lose user and password; malformed text loses everything before its last @', () => {
    assert.equal(redactUrl('rediss://app:pw@cache.example.com:6380/2'), 'rediss://cache.example.com:6380/2');
    assert.equal(redactUrl('redis://:pw@cache:notaport'), 'redis://…@cache:notaport');
    assert.equal(redactUrl('rediss://u:p@ss@[h:1'), 'rediss://…@[h:1');
    assert.equal(redactUrl('no credentials here'), 'no credentials here');
  });
});

describe('loadConfig: metrics and the consistency inspector', () => {
  test('defaults: the namespace dynamo-redis-cache, one record in a hundred inspected', () => {
    const c = loadConfig({ ...BASE });
    assert.deepEqual(c.observe, { metricsNamespace: 'dynamo-redis-cache', inspectSampleRate: 0.01 });
  });

  test('set: a stage namespace, any share from 0 to 1', () => {
    for (const [raw, rate] of [
      ['0', 0],
      ['1', 1],
      ['0.25', 0.25],
      ['.5', 0.5],
    ] as const) {
      const c = loadConfig({ ...BASE, CACHE_METRICS_NAMESPACE: 'dynamo-redis-cache-prod', CACHE_INSPECT_SAMPLE_RATE: raw });
      assert.deepEqual(c.observe, { metricsNamespace: 'dynamo-redis-cache-prod', inspectSampleRate: rate });
    }
  });

  test('a share outside 0 to 1, or not a number, names CACHE_INSPECT_SAMPLE_RATE', () => {
    for (const raw of ['1.5', '-0.1', 'often', '1e-2', '50%']) {
      throwsConfig(() => loadConfig({ ...BASE, CACHE_INSPECT_SAMPLE_RATE: raw }), 'CACHE_INSPECT_SAMPLE_RATE', /from 0 to 1/);
    }
  });

  test('a namespace CloudWatch refuses names CACHE_METRICS_NAMESPACE', () => {
    for (const raw of [':leading-colon', 'with space', 'x'.repeat(256), 'émoji']) {
      throwsConfig(() => loadConfig({ ...BASE, CACHE_METRICS_NAMESPACE: raw }), 'CACHE_METRICS_NAMESPACE');
    }
  });
});
