/** DynamoDB Local, as the tests and the local stack start it, listens on 127.0.0.1 only (SECURITY.md). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { dynamoEndpoint } from '../helpers/stack.ts';

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

test("DynamoDB Local is not reachable on this machine's non-loopback addresses, only on 127.0.0.1", async (t) => {
  // Binding needs java to run DynamoDbLocalLoopback.java, which takes a JDK's compiler (infra/local/dynamodb-local.ts).
  const modules = execFileSync('java', ['--list-modules'], { encoding: 'utf8' });
  if (!modules.includes('jdk.compiler')) {
    t.skip('java has no compiler here: DynamoDB Local listens on every interface (SECURITY.md, Known gaps)');
    return;
  }
  const addresses = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal && !a.address.startsWith('fe80'))
    .map((a) => a!.address);
  if (addresses.length === 0) {
    t.skip('this machine has no non-loopback address to try');
    return;
  }
  // The instance every test of this run uses (test/run.ts started it).
  const port = Number(new URL(dynamoEndpoint()).port);
  assert.equal(await accepts('127.0.0.1', port), true, 'the control: reachable on loopback');
  for (const address of addresses) assert.equal(await accepts(address, port), false, `reachable on ${address}:${port}`);
});
