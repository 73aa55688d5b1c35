/** DynamoDB Local, as the tests and the local stack start it, listens on 127.0.0.1 only (SECURITY.md). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { dynamoEndpoint } from '../helpers/stack.ts';
import { freePort } from '../helpers/ports.ts';
import { startDynamoDbLocal } from '../../infra/local/dynamodb-local.ts';

/** Whether a TCP connection to host:port is accepted (true) or refused (false). */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      socket.destroy();
      if (err.code === 'ECONNREFUSED') resolve(false);
      else reject(err);
    });
  });
}

/** This machine's addresses other than loopback (link-local IPv6 left out: it needs a scope). */
function nonLoopbackAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal && !a.address.startsWith('fe80'))
    .map((a) => a!.address);
}

test("DynamoDB Local is not reachable on this machine's non-loopback addresses, only on 127.0.0.1", async (t) => {
  // Binding needs java to run DynamoDbLocalLoopback.java, which takes a JDK's compiler (infra/local/dynamodb-local.ts).
  // infra/local/setup.sh installs a JDK, so a machine set up by it has one.
  const modules = execFileSync('java', ['--list-modules'], { encoding: 'utf8' });
  assert.ok(modules.includes('jdk.compiler'), 'java has a compiler (a JDK: npm run setup installs one)');
  const addresses = nonLoopbackAddresses();
  if (addresses.length === 0) {
    t.skip('this machine has no non-loopback address to try');
    return;
  }
  // The instance every test of this run uses (test/run.ts started it).
  const port = Number(new URL(dynamoEndpoint()).port);
  assert.equal(await accepts('127.0.0.1', port), true, 'the control: reachable on loopback');
  for (const address of addresses) assert.equal(await accepts(address, port), false, `reachable on ${address}:${port}`);
});

test('where java cannot run the launcher (no JDK compiler), DynamoDB Local still starts, and says it listens everywhere', async () => {
  // A JRE, simulated: the JVM without the jdk.compiler module.
  const saved = process.env.JDK_JAVA_OPTIONS;
  process.env.JDK_JAVA_OPTIONS = '--limit-modules java.se';
  const local = await startDynamoDbLocal(await freePort()).finally(() => {
    if (saved === undefined) delete process.env.JDK_JAVA_OPTIONS;
    else process.env.JDK_JAVA_OPTIONS = saved;
  });
  try {
    assert.equal(local.loopbackOnly, false);
    assert.equal(await accepts('127.0.0.1', local.port), true);
    // Honest about it: the fallback is reachable from outside, as SECURITY.md's known gaps say.
    for (const address of nonLoopbackAddresses()) assert.equal(await accepts(address, local.port), true, address);
  } finally {
    await local.stop();
  }
});
