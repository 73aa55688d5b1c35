/**
 * The AUTH token from Secrets Manager at cold start, and a rotation end to end (README, "Rotating
 * the AUTH token"). Secrets Manager has no local form: a real HTTP server on a free port answers
 * GetSecretValue as the service's JSON protocol does, and the SDK reaches it through
 * AWS_ENDPOINT_URL_SECRETS_MANAGER. What the real service, its IAM policy and ElastiCache's own
 * token update do is not verified here (SECURITY.md).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { logsDuring } from '../helpers/capture-logs.ts';
import { resolveSecretVariables } from '../../lib/index.ts';

const ARN = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:cache-auth-token-AbCdEf';
const OLD = 'old-token-0123456789abcdef';
const NEW = 'new-token-fedcba9876543210';

/** The secret's versions by stage, as the fake endpoint serves them. */
const stages: Record<string, string | undefined> = { AWSCURRENT: OLD, AWSPREVIOUS: undefined };
let requests = 0;

function secretsManager(): Promise<Server> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests++;
      const input = JSON.parse(body) as { SecretId: string; VersionStage?: string };
      const stage = input.VersionStage ?? 'AWSCURRENT';
      const token = input.SecretId === ARN ? stages[stage] : undefined;
      res.setHeader('content-type', 'application/x-amz-json-1.1');
      if (req.headers['x-amz-target'] !== 'secretsmanager.GetSecretValue' || token === undefined) {
        res.statusCode = 400;
        res.end(JSON.stringify({ __type: 'ResourceNotFoundException', message: `no ${stage} version of ${input.SecretId}` }));
        return;
      }
      res.end(
        JSON.stringify({
          ARN,
          Name: 'cache-auth-token',
          VersionId: `v-${stage}`,
          VersionStages: [stage],
          SecretString: JSON.stringify({ token }),
        }),
      );
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('the AUTH token from a secret', () => {
  let stack: TestStack;
  let endpoint: Server;
  const saved = { ...process.env };

  before(async () => {
    endpoint = await secretsManager();
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
    process.env.AWS_REGION = 'us-east-1';
    process.env.AWS_ACCESS_KEY_ID = 'local';
    process.env.AWS_SECRET_ACCESS_KEY = 'local';
    stack = await startStack({ shards: 1, redis: { password: OLD } });
  });
  after(async () => {
    await stack.stop();
    endpoint.close();
    process.env = saved;
  });

  /** A cold start: the environment the deploy gives (an ARN, no token), resolved as the functions do. */
  async function coldStart(): Promise<Record<string, string>> {
    const env: NodeJS.ProcessEnv = { CACHE_AUTH_TOKEN_SECRET_ARN: ARN };
    await resolveSecretVariables(env);
    return { ...(env as Record<string, string>), CACHE_ALLOW_PLAIN_AUTH: 'true', CACHE_CHECK_INTERVAL_SECONDS: '1' };
  }

  async function until(what: string, check: () => Promise<boolean>): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`never: ${what}`);
  }

  test('a cold start takes the token from the secret; the configuration carries only its ARN', async () => {
    const env = await coldStart();
    assert.equal(env.CACHE_AUTH_TOKEN, OLD);
    const cache = stack.cache(env);
    await cache.put('users', { userId: 'a', n: 1 });
    await until('the node is up', async () => cache.health()[0]?.status === 'up');
    await cache.get('users', { userId: 'a' });
    assert.equal((await cache.get('users', { userId: 'a' })).cache, 'hit');
  });

  test('both the token and its secret configured is an error naming them', async () => {
    await assert.rejects(
      resolveSecretVariables({ CACHE_AUTH_TOKEN: 'x', CACHE_AUTH_TOKEN_SECRET_ARN: ARN }),
      /CACHE_AUTH_TOKEN and CACHE_AUTH_TOKEN_SECRET_ARN are both set/,
    );
  });

  test('an unreachable secret leaves the token unset, logged without a secret, and requests are served from DynamoDB', async () => {
    const env: NodeJS.ProcessEnv = { CACHE_AUTH_TOKEN_SECRET_ARN: `${ARN}-missing` };
    const { logs } = await logsDuring(() => resolveSecretVariables(env));
    assert.equal(env.CACHE_AUTH_TOKEN, undefined);
    const line = logs.find((l) => l.message === 'SECRET_UNAVAILABLE');
    assert.ok(line, JSON.stringify(logs));
    assert.equal(line.variable, 'CACHE_AUTH_TOKEN');
    assert.ok(!JSON.stringify(logs).includes(OLD));
    const cache = stack.cache({ ...(env as Record<string, string>), CACHE_ALLOW_PLAIN_AUTH: 'true' });
    await cache.put('users', { userId: 'b', n: 1 });
    const r = await cache.get('users', { userId: 'b' });
    assert.equal(r.item?.n, 1);
    assert.equal(r.cache, 'bypass');
  });

  test('a rotation: the secret changes first, the nodes after; no container loses the cache for good and no request fails', async () => {
    // A warm container authenticated with the old token.
    const warm = stack.cache(await coldStart());
    await warm.put('users', { userId: 'r', n: 1 });
    await until('the warm container is up', async () => warm.health()[0]?.status === 'up');

    // Step 1: a new token becomes the secret's current value; the nodes still hold the old one.
    stages.AWSPREVIOUS = OLD;
    stages.AWSCURRENT = NEW;
    const cold = stack.cache(await coldStart());
    assert.equal(cold.config.cache.authToken, NEW);
    // The node refuses the new token: the container asks the secret again and falls back to the previous one.
    await cold.put('users', { userId: 'r', n: 2 });
    assert.equal((await cold.get('users', { userId: 'r' })).item?.n, 2);
    await until('the cold container is up with the previous token', async () => {
      await cold.get('users', { userId: 'r' });
      return cold.health()[0]?.status === 'up';
    });

    // Step 2: the nodes take the new token (what a deploy of the new version does) and drop every connection.
    const server = stack.servers[0]!;
    const admin = server.client({ password: OLD });
    await admin.config('SET', 'requirepass', NEW);
    await admin.client('KILL', 'TYPE', 'normal').catch(() => undefined);
    admin.disconnect();
    // Every request is still answered (from DynamoDB while the node is refused), and both
    // containers come back to the cache with the new token.
    for (const c of [warm, cold]) {
      await until('the container is up with the new token', async () => {
        const r = await c.get('users', { userId: 'r' });
        assert.equal(r.item?.n, 2);
        return c.health()[0]?.status === 'up';
      });
    }
    await warm.get('users', { userId: 'r' });
    assert.equal((await warm.get('users', { userId: 'r' })).cache, 'hit');
    assert.ok(requests > 0);
  });
});
