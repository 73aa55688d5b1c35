import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from '../../lib/index.ts';
import { loggedKey } from '../../lib/log.ts';
import { loadYaml } from '../../infra/tables.ts';

/** lib/config.ts's MIN_LOG_KEYS_SECRET_LENGTH, spelled out so this file also runs against code without it. */
const MIN_LOG_KEYS_SECRET_LENGTH = 32;
const BASE = { CACHE_NODES: 'rediss://cache:6379' };
const SECRET = 'k'.repeat(MIN_LOG_KEYS_SECRET_LENGTH);
const OTHER = 'o'.repeat(MIN_LOG_KEYS_SECRET_LENGTH);
const KEY = 'prod-users:ada@example.com:t';

const hashed = (secret: string, key = KEY): string =>
  loggedKey(key, loadConfig({ ...BASE, CACHE_LOG_KEYS: 'hash', CACHE_LOG_KEYS_SECRET: secret }).cache.logKeys);

describe('CACHE_LOG_KEYS=hash: a keyed hash (HMAC-SHA-256) under CACHE_LOG_KEYS_SECRET', () => {
  test('the same key and secret give the same hash (log lines still join); another key or secret another one', () => {
    assert.equal(hashed(SECRET), hashed(SECRET));
    assert.match(hashed(SECRET), /^hmac:[0-9a-f]{16}$/);
    assert.notEqual(hashed(SECRET), hashed(OTHER));
    assert.notEqual(hashed(SECRET), hashed(SECRET, `${KEY}x`));
  });

  test('the hash is not the unkeyed SHA-256 prefix a dictionary reverses, and does not hold the key', () => {
    const unkeyed = createHash('sha256').update(KEY).digest('hex').slice(0, 16);
    assert.ok(!hashed(SECRET).includes(unkeyed));
    assert.ok(!hashed(SECRET).includes('ada'));
    // A dictionary attack needs the secret: with a guessed one, the candidates do not match.
    const guess = loggedKey(KEY, loadConfig({ ...BASE, CACHE_LOG_KEYS: 'hash', CACHE_LOG_KEYS_SECRET: 'g'.repeat(40) }).cache.logKeys);
    assert.notEqual(guess, hashed(SECRET));
  });

  test('plain (the default) logs keys as they are', () => {
    assert.equal(loggedKey(KEY, loadConfig(BASE).cache.logKeys), KEY);
    assert.equal(loggedKey(KEY, loadConfig({ ...BASE, CACHE_LOG_KEYS_SECRET: SECRET }).cache.logKeys), KEY);
  });

  test('hash without a secret, or with a short one, is a ConfigError naming CACHE_LOG_KEYS_SECRET', () => {
    for (const secret of [undefined, '', '   ', 'x'.repeat(MIN_LOG_KEYS_SECRET_LENGTH - 1)]) {
      assert.throws(
        () => loadConfig({ ...BASE, CACHE_LOG_KEYS: 'hash', CACHE_LOG_KEYS_SECRET: secret }),
        (e: unknown) => e instanceof ConfigError && e.variable === 'CACHE_LOG_KEYS_SECRET',
      );
    }
  });

  test('the secret shows neither in the settings as JSON nor as util.inspect prints them', () => {
    const config = loadConfig({ ...BASE, CACHE_LOG_KEYS: 'hash', CACHE_LOG_KEYS_SECRET: SECRET });
    assert.ok(!JSON.stringify(config).includes(SECRET));
    assert.ok(!inspect(config, { depth: 10, showHidden: true }).includes(SECRET));
  });

  test('serverless.yml gives the functions the ARN of a generated Secrets Manager secret (fetched at cold start), as for CACHE_AUTH_TOKEN', () => {
    const yml = loadYaml(fileURLToPath(new URL('../../serverless.yml', import.meta.url))) as Record<string, any>;
    const env = yml.provider.environment;
    // The value only where a stage passes one (the local stack); deployed, the secret's ARN (lib/secrets.ts).
    assert.equal(env.CACHE_LOG_KEYS_SECRET, '${param:logKeysSecret, null}');
    assert.equal(
      env.CACHE_LOG_KEYS_SECRET_SECRET_ARN,
      '${self:custom.secretArns.${param:secretArnsOf, sls:stage}.logKeys, self:custom.secretArns.default.logKeys}',
    );
    assert.deepEqual(yml.custom.secretArns.default.logKeys, { Ref: 'LogKeysSecret' });
    const secret = yml.resources.map((r: Record<string, any>) => r.Resources?.LogKeysSecret).find(Boolean);
    assert.equal(secret.Type, 'AWS::SecretsManager::Secret');
    assert.equal(secret.Properties.GenerateSecretString.GenerateStringKey, 'key');
    assert.ok(secret.Properties.GenerateSecretString.PasswordLength >= MIN_LOG_KEYS_SECRET_LENGTH);
    assert.equal(secret.Properties.SecretString, undefined, 'generated, not written down');
    assert.equal(yml.params.local.logKeysSecret, '');
  });
});
