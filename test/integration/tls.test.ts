/** Redis TLS and AUTH, as ElastiCache requires them: rediss:// URLs, AUTH token, ACL user. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import { freePort } from '../helpers/ports.ts';
import { generateTlsMaterial, redisTlsArgs, type TlsMaterial } from '../../infra/local/tls.ts';
import { ConfigError, loadConfig } from '../../lib/index.ts';

describe('Redis TLS and AUTH', () => {
  let stack: TestStack;
  let tls: TlsMaterial;
  let server: RedisServer;
  let tlsPort: number;
  before(async () => {
    stack = await startStack({ shards: 1 });
    tls = generateTlsMaterial();
    tlsPort = await freePort();
    server = await RedisServer.start({ password: 's3cret', extraArgs: redisTlsArgs(tls, tlsPort) });
    const admin = server.client();
    await admin.call('ACL', 'SETUSER', 'app', 'on', '>app-pass', '~*', '+@all');
    await admin.quit();
  });
  after(async () => {
    await server.stop();
    await stack.stop();
    rmSync(tls.dir, { recursive: true, force: true });
  });

  test('rediss:// with the password in the URL: reads hit, writes store, over TLS', async () => {
    const c = stack.cache({ CACHE_NODES: `rediss://:s3cret@127.0.0.1:${tlsPort}`, CACHE_TLS_CA_FILE: tls.caFile });
    await c.put('users', { userId: 'tls', v: 1 });
    const r = await c.get('users', { userId: 'tls' });
    assert.equal(r.cache, 'hit');
    assert.equal(r.item?.v, 1);
    assert.deepEqual(
      c.health().map((h) => [h.address, h.status]),
      [[`rediss://127.0.0.1:${tlsPort}`, 'up']],
      'no credentials in health',
    );
    // The entry really is on the TLS server.
    const admin = server.client();
    assert.equal(await admin.exists(c.resolve('users', { userId: 'tls' }).redisKey), 1);
    await admin.quit();
  });

  test('the AUTH token from CACHE_AUTH_TOKEN and an ACL user from CACHE_AUTH_USER', async () => {
    const byToken = stack.cache({
      CACHE_NODES: `rediss://127.0.0.1:${tlsPort}`,
      CACHE_TLS_CA_FILE: tls.caFile,
      CACHE_AUTH_TOKEN: 's3cret',
    });
    await byToken.put('users', { userId: 'tok', v: 2 });
    assert.equal((await byToken.get('users', { userId: 'tok' })).cache, 'hit');
    const byUser = stack.cache({
      CACHE_NODES: `rediss://127.0.0.1:${tlsPort}`,
      CACHE_TLS_CA_FILE: tls.caFile,
      CACHE_AUTH_USER: 'app',
      CACHE_AUTH_TOKEN: 'app-pass',
    });
    assert.equal((await byUser.get('users', { userId: 'tok' })).cache, 'hit');
  });

  test('a wrong password or an untrusted certificate costs nothing but the cache: requests are served from DynamoDB', async () => {
    const seed = stack.cache({ CACHE_NODES: `rediss://:s3cret@127.0.0.1:${tlsPort}`, CACHE_TLS_CA_FILE: tls.caFile });
    await seed.put('users', { userId: 'bad', v: 3 });
    const wrongPassword = stack.cache({ CACHE_NODES: `rediss://:nope@127.0.0.1:${tlsPort}`, CACHE_TLS_CA_FILE: tls.caFile });
    const a = await wrongPassword.get('users', { userId: 'bad' });
    assert.equal(a.item?.v, 3);
    assert.equal(a.cache, 'bypass');
    const untrusted = stack.cache({ CACHE_NODES: `rediss://:s3cret@127.0.0.1:${tlsPort}` }); // no CA: the self-signed chain is refused
    const b = await untrusted.get('users', { userId: 'bad' });
    assert.equal(b.item?.v, 3);
    assert.equal(b.cache, 'bypass');
  });

  test('CACHE_TLS_CA_FILE must be a readable PEM file', () => {
    assert.throws(
      () => loadConfig({ ...stack.env, CACHE_TLS_CA_FILE: '/nonexistent/ca.pem' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'CACHE_TLS_CA_FILE',
    );
    assert.throws(
      () => loadConfig({ ...stack.env, CACHE_TLS_CA_FILE: tls.keyFile }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'CACHE_TLS_CA_FILE',
    );
  });
});
