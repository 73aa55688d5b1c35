/**
 * Self-test of the local services the tests start (RedisServer, DynamoDB Local wiring).
 * Run with: node --import tsx test/run.ts redis-server
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from 'ioredis';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { RedisServer } from '../helpers/redis-server.ts';
import { localDynamoClientConfig } from '../helpers/dynamodb-local.ts';

describe('RedisServer helper', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test('start, set a key, restart keeping / losing data', async () => {
    const srv = await RedisServer.start({ maxmemory: '2mb', maxmemoryPolicy: 'allkeys-lru' });
    cleanups.push(() => srv.stop());
    assert.notEqual(srv.port, 6379);
    assert.equal(srv.url, `redis://127.0.0.1:${srv.port}`);
    assert.ok(srv.pid > 0);

    const c = srv.client();
    try {
      assert.equal(await c.config('GET', 'maxmemory-policy').then((r) => (r as string[])[1]), 'allkeys-lru');
      await c.set('k', 'v1');
    } finally {
      c.disconnect();
    }
    assert.equal(await srv.dbsize(), 2, 'the key, and the seal of the first epoch (sealFirstStart)');

    const runId1 = await srv.runId();
    const pid1 = srv.pid;
    await srv.restart({ keepData: true });
    const runId2 = await srv.runId();
    assert.notEqual(runId2, runId1, 'run_id changes on restart');
    assert.notEqual(srv.pid, pid1);
    const c2 = srv.client();
    try {
      assert.equal(await c2.get('k'), 'v1', 'keepData=true keeps the key');
    } finally {
      c2.disconnect();
    }

    await srv.restart({ keepData: false });
    assert.notEqual(await srv.runId(), runId2);
    assert.equal(await srv.dbsize(), 0, 'keepData=false starts empty');
  });

  test('pause makes commands time out, resume makes them work again', async () => {
    const srv = await RedisServer.start();
    cleanups.push(() => srv.stop());
    const c = srv.client({ commandTimeout: 200, maxRetriesPerRequest: 0 });
    try {
      assert.equal(await c.ping(), 'PONG');
      srv.pause();
      await assert.rejects(c.ping(), /timed out/i);
      srv.resume();
      assert.equal(await c.set('after-resume', '1'), 'OK');
      assert.equal(await c.get('after-resume'), '1');
    } finally {
      srv.resume();
      c.disconnect();
    }
  });

  test('kill, then stop is idempotent', async () => {
    const srv = await RedisServer.start();
    await srv.kill();
    await srv.stop();
    await srv.stop();
  });

  test('replica follows the primary and can be promoted', async () => {
    const primary = await RedisServer.start();
    cleanups.push(() => primary.stop());
    const replica = await RedisServer.startReplicaOf(primary);
    cleanups.push(() => replica.stop());

    const p = primary.client();
    const r = replica.client();
    try {
      await p.set('rk', 'from-primary');
      await p.call('WAIT', '1', '2000');
      assert.equal(await r.get('rk'), 'from-primary');
      await assert.rejects(r.set('x', '1'), /READONLY/);

      await replica.promote();
      assert.equal(await r.set('x', '1'), 'OK');
      assert.equal(await r.get('rk'), 'from-primary');
    } finally {
      p.disconnect();
      r.disconnect();
    }
  });

  test('cluster of 3 reaches cluster_state:ok and serves set/get through ioredis Cluster', async () => {
    const cluster = await RedisServer.startCluster(3);
    cleanups.push(() => cluster.stop());
    assert.equal(cluster.servers.length, 3);
    for (const s of cluster.servers) {
      const c = s.client();
      try {
        assert.match(String(await c.call('CLUSTER', 'INFO')), /cluster_state:ok/);
      } finally {
        c.disconnect();
      }
    }

    const rc = new Cluster(cluster.nodes, { redisOptions: { connectTimeout: 2000 } });
    rc.on('error', () => {});
    try {
      for (let i = 0; i < 20; i++) await rc.set(`key:${i}`, String(i));
      for (let i = 0; i < 20; i++) assert.equal(await rc.get(`key:${i}`), String(i));
    } finally {
      rc.disconnect();
    }
    // The 20 keys, spread over the primaries (each also holds its first epoch's seal, startCluster).
    const counts = await Promise.all(
      cluster.servers.map(async (s) => {
        const c = s.client();
        try {
          return (await c.keys('key:*')).length;
        } finally {
          c.disconnect();
        }
      }),
    );
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      20,
    );
    assert.ok(counts.filter((n) => n > 0).length > 1, `keys spread over several nodes: ${counts.join(',')}`);
  });
});

describe('DynamoDB Local (started by test/run.ts)', () => {
  test('DYNAMODB_ENDPOINT is set and ListTables works', async () => {
    const endpoint = process.env.DYNAMODB_ENDPOINT;
    assert.ok(endpoint, 'DYNAMODB_ENDPOINT must be set (run the tests via test/run.ts)');
    const client = new DynamoDBClient(localDynamoClientConfig(endpoint));
    try {
      const out = await client.send(new ListTablesCommand({}));
      assert.ok(Array.isArray(out.TableNames));
    } finally {
      client.destroy();
    }
  });
});
