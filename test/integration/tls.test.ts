/** Redis TLS and AUTH, as ElastiCache requires them: rediss:// URLs, AUTH token, ACL user. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { RedisServer } from '../helpers/redis-server.ts';
import { freePort } from '../helpers/ports.ts';
import { generateTlsMaterial, redisTlsArgs, type TlsMaterial } from '../../infra/local/tls.ts';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { ConfigError, loadConfig } from '../../lib/index.ts';
import { eventually } from '../helpers/stack.ts';
import { captureLogs } from '../helpers/capture-logs.ts';

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

  test('a plain redis:// node with an AUTH token is refused by the config: a listener there never receives the token', async () => {
    // Prepare: a plain TCP listener standing in for a node, recording every byte it receives.
    const received: Buffer[] = [];
    const sockets = new Set<Socket>();
    const listener = createServer((socket) => {
      sockets.add(socket);
      socket.on('data', (d) => received.push(d));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const plain = `redis://127.0.0.1:${(listener.address() as AddressInfo).port}`;
    const token = 's3cr3t-token';
    try {
      // Act and assess: the token, or a password in the URL, over plain TCP is a ConfigError naming the variable.
      const refused = (variable: string) => (e: unknown) =>
        e instanceof ConfigError && e.variable === variable && !e.message.includes(token) && /rediss:\/\//.test(e.message);
      assert.throws(() => stack.cache({ CACHE_NODES: plain, CACHE_AUTH_TOKEN: token }), refused('CACHE_AUTH_TOKEN'));
      assert.throws(() => stack.cache({ CACHE_NODES: plain.replace('//', `//:${token}@`) }), refused('CACHE_NODES'));
      assert.throws(() => stack.cache({ CACHE_NODES: plain.replace('//', `//app:${token}@`) }), refused('CACHE_NODES'));
      await new Promise((r) => setImmediate(r));
      assert.equal(Buffer.concat(received).length, 0, 'nothing was sent to the listener');
      // Control: allowed explicitly (a local stack), the same listener does receive it, so the check above can fail.
      const local = stack.cache({ CACHE_NODES: plain, CACHE_AUTH_TOKEN: token, CACHE_ALLOW_PLAIN_AUTH: '1' });
      await eventually('the listener receives AUTH', async () => Buffer.concat(received).toString('latin1').includes(token));
      await local.close();
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => listener.close(r));
    }
  });

  test('rediss://user@host without a password takes CACHE_AUTH_TOKEN (AUTH user token), over TLS', async () => {
    for (const [user, token] of [
      ['default', 's3cret'],
      ['app', 'app-pass'],
    ]) {
      const c = stack.cache({
        CACHE_NODES: `rediss://${user}@127.0.0.1:${tlsPort}`,
        CACHE_TLS_CA_FILE: tls.caFile,
        CACHE_AUTH_TOKEN: token as string,
      });
      await c.put('users', { userId: `user-${user}`, v: 5 });
      const r = await c.get('users', { userId: `user-${user}` });
      assert.equal(r.cache, 'hit', `${user}: the node is up and serves hits`);
      assert.deepEqual(
        c.health().map((h) => h.status),
        ['up'],
      );
    }
  });

  test('a TLS failure (a CA that did not sign the certificate) is logged with the certificate error, once, without secrets', async () => {
    const other = generateTlsMaterial();
    const logs = captureLogs();
    try {
      // Act: a client that trusts another CA, reconnecting in the background.
      // (Its own spelling of the address: other tests' clients of this server keep reconnecting.)
      const c = stack.cache({ CACHE_NODES: `rediss://:s3cret@localhost:${tlsPort}`, CACHE_TLS_CA_FILE: other.caFile });
      let errors = 0;
      c.shards.nodes[0]!.client.on('error', () => errors++);
      assert.equal((await c.get('users', { userId: 'bad' })).cache, 'bypass');
      await eventually('three failed connection attempts', async () => errors >= 3);
      // Assess: the certificate error, under the node's redacted address, once for all those attempts.
      const address = `rediss://localhost:${tlsPort}`;
      const logged = logs.entries().filter((e) => e.message === 'CACHE_NODE_CONNECTION_ERROR' && e.cacheNode === address);
      assert.equal(logged.length, 1, JSON.stringify(logged));
      assert.match(String(logged[0]!.error), /certificate|self[- ]signed/i);
      assert.ok(!logs.text().includes('s3cret'), 'no password in any log line');
    } finally {
      logs.stop();
      rmSync(other.dir, { recursive: true, force: true });
    }
  });
});
