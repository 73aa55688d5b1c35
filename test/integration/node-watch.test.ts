/**
 * The consistency run's node watch (consistency/network.ts): a redis-server that answers nobody for a
 * while, no fault injected by the nemesis, is seen as a silence of that node, so the checker can tell
 * a strict refusal while the node answered nobody from one while it answered (checker.ts silentNode).
 * A real redis-server, paused with SIGSTOP; a killed one, restarted on its port.
 * Run with: node --import tsx test/run.ts node-watch
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Network } from '../../consistency/network.ts';
import { now, sleep } from '../../consistency/rng.ts';
import { RedisServer } from '../helpers/redis-server.ts';

describe('consistency run: the node watch', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test('a node paused for 250 ms is one silence covering the pause, named after the node; a node not paused has none as long', async () => {
    // Prepare
    const net = await Network.start();
    cleanups.push(() => net.stop());
    const paused = await RedisServer.start();
    cleanups.push(() => paused.stop());
    const other = await RedisServer.start();
    cleanups.push(() => other.stop());
    await net.watch('shard0', paused.port);
    await net.watch('shard1', other.port);
    await sleep(200);
    // Act
    const pausedAt = now();
    paused.pause();
    await sleep(250);
    const resumedAt = now();
    paused.resume();
    await sleep(200);
    const silences = await net.silences();
    // Assess
    const covering = silences.filter((s) => s.node === 'shard0' && s.start <= pausedAt + 25 && s.end >= resumedAt);
    assert.equal(covering.length, 1, JSON.stringify(silences));
    const other250 = silences.filter((s) => s.node === 'shard1' && s.end - s.start - s.ownStallMs >= 250);
    assert.deepEqual(other250, [], 'the node not paused answered within the pause');
  });

  test('a node killed and restarted on its port is a silence from its last answer to its first answer after the restart', async () => {
    // Prepare
    const net = await Network.start();
    cleanups.push(() => net.stop());
    const server = await RedisServer.start();
    cleanups.push(() => server.stop());
    await net.watch('shard0', server.port);
    await sleep(200);
    // Act
    const killedAt = now();
    await server.kill();
    await sleep(200);
    const stillDownAt = now();
    await server.restart({ keepData: false });
    await sleep(300);
    const silences = await net.silences();
    // Assess
    const covering = silences.filter((s) => s.node === 'shard0' && s.start <= killedAt + 25 && s.end >= stillDownAt);
    assert.equal(covering.length, 1, JSON.stringify(silences));
  });
});
