/**
 * An outage does not flood the logs: the consumer, the replayer and the sweep each log one line
 * per node per invocation for what they could not apply, with the count and the keys (hashed under
 * CACHE_LOG_KEYS=hash), never one line per record.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { batch, streamRecord } from '../helpers/stream-records.ts';
import { logsDuring } from '../helpers/capture-logs.ts';
import { loggedKey } from '../../lib/log.ts';
import { FIRST_SWEEP_DELAY_MS } from '../../lib/stream/parking.ts';
import { sweepParkedInvalidations } from '../../lib/stream/sweep.ts';
import { createStreamHandler } from '../../functions/stream.ts';
import { createReplayHandler } from '../../functions/replay.ts';

describe('stream logs during an outage', () => {
  let stack: TestStack;
  before(async () => {
    stack = await startStack({ shards: 2, parking: true });
  });
  after(async () => stack.stop());

  for (const mode of ['plain', 'hash'] as const) {
    test(`one line per node per invocation, with the count and the keys (CACHE_LOG_KEYS=${mode})`, async () => {
      // Prepare: twelve users on the node that will be away, two on the other.
      const logEnv = { CACHE_LOG_KEYS: mode, ...(mode === 'hash' ? { CACHE_LOG_KEYS_SECRET: 'a-log-key-secret-of-32-characters' } : {}) };
      const cache = stack.cache({
        ...logEnv,
      });
      const [onAway, onUp] = stack.usersOnDistinctServers(cache, `logs-${mode}`);
      const away = onAway!.server;
      const awayUsers: string[] = [];
      for (let i = 0; awayUsers.length < 12; i++) {
        const userId = `logs-${mode}-${i}`;
        if (stack.serverOf(cache, cache.resolve('users', { userId })) === away) awayUsers.push(userId);
      }
      const records = [...awayUsers, onUp!.key.userId, onUp!.key.userId].map((userId, i) =>
        streamRecord(stack, 'users', { userId: { S: userId } }, String(1000 + i)),
      );
      const expectedKeys = awayUsers
        .map((userId) => loggedKey(cache.resolve('users', { userId }).redisKey, cache.config.cache.logKeys))
        .sort();
      const perRecord = (logs: Record<string, unknown>[]) => logs.filter((l) => 'itemKey' in l && 'record' in l);
      away.pause();
      try {
        // Act 1: the consumer parks twelve records for the node that is away.
        const consumer = createStreamHandler(cache);
        const { logs: consumed } = await logsDuring(() => consumer(batch(...records)));
        const parkedLines = consumed.filter((l) => l.message === 'STREAM_RECORDS_PARKED');
        assert.equal(parkedLines.length, 1, JSON.stringify(consumed.map((l) => l.message)));
        assert.equal(parkedLines[0]!.count, awayUsers.length);
        assert.deepEqual([...(parkedLines[0]!.keys as string[])].sort(), expectedKeys);
        assert.match(String(parkedLines[0]!.cacheNode), new RegExp(`:${away.port}$`));
        assert.deepEqual(perRecord(consumed), [], 'no line per record');

        // Act 2: the replayer's first attempt at each, from the parking table's images.
        const items = (await stack.dynamo.send(new ScanCommand({ TableName: stack.parkingTable, ConsistentRead: true }))).Items ?? [];
        const mine = items.filter((p) => awayUsers.some((u) => p.keys?.S?.includes(`"${u}"`)));
        assert.equal(mine.length, awayUsers.length);
        const parkingRecords = mine.map(
          (NewImage, i): DynamoDBRecord => ({
            eventID: `p${i}`,
            eventName: 'INSERT',
            dynamodb: { SequenceNumber: String(i + 1), NewImage } as DynamoDBRecord['dynamodb'],
          }),
        );
        const replay = createReplayHandler(stack.cache(logEnv));
        const { logs: replayed } = await logsDuring(() => replay(batch(...parkingRecords)));
        const waiting = replayed.filter((l) => l.message === 'PARKED_INVALIDATIONS_WAITING');
        assert.equal(waiting.length, 1, JSON.stringify(replayed.map((l) => l.message)));
        assert.equal(waiting[0]!.count, awayUsers.length);
        assert.deepEqual([...(waiting[0]!.keys as string[])].sort(), expectedKeys);
        assert.deepEqual(perRecord(replayed), []);

        // Act 3: a sweep while the node is still away.
        const sweeper = stack.cache(logEnv);
        const { logs: swept } = await logsDuring(() =>
          sweepParkedInvalidations(sweeper, stack.parkingTable as string, { now: Date.now() + FIRST_SWEEP_DELAY_MS }),
        );
        const deferred = swept.filter((l) => l.message === 'PARKED_INVALIDATIONS_DEFERRED');
        assert.equal(deferred.length, 1, JSON.stringify(swept.map((l) => l.message)));
        assert.equal(deferred[0]!.count, awayUsers.length);
        assert.deepEqual([...(deferred[0]!.keys as string[])].sort(), expectedKeys);
        if (mode === 'hash') assert.ok(expectedKeys.every((k) => k.startsWith('hmac:')));
      } finally {
        away.resume();
      }
      await sweepParkedInvalidations(stack.cache(), stack.parkingTable as string, { now: Date.now() + 3_600_000 });
    });
  }
});
