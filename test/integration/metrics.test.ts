/**
 * The metrics as CloudWatch would get them: the EMF lines the handlers print, read back and added
 * up for a known sequence of operations; the consistency inspector finding a stale entry planted on
 * purpose and nothing on a clean sequence; and every metric infra/monitoring.yml names printed by
 * one of the code paths exercised here.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { GetItemCommand, PutItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';
import { Redis } from 'ioredis';
import yaml from 'js-yaml';
import { eventually, Gate, startStack, type TestStack } from '../helpers/stack.ts';
import type { RedisServer } from '../helpers/redis-server.ts';
import { batch, streamRecord } from '../helpers/stream-records.ts';
import { logsDuring } from '../helpers/capture-logs.ts';
import { apiEvent } from '../helpers/api-event.ts';
import { alarmMetrics, dashboardMetrics } from '../helpers/monitoring.ts';
import { createHttpApp } from '../../functions/http/app.ts';
import { allRoutes } from '../../functions/http/routes.ts';
import { createStreamHandler } from '../../functions/stream.ts';
import { createReplayHandler } from '../../functions/replay.ts';
import { createSweepHandler } from '../../functions/sweep.ts';
import { ConsistencyInspector, METRICS, type ItemCache } from '../../lib/index.ts';
import { loggedKey } from '../../lib/log.ts';

/** One EMF document: its metrics (values summed when a metric holds several) and its dimensions. */
interface EmfDocument {
  metrics: Record<string, number>;
  dimensions: Record<string, string>;
  namespace: string;
}

function emfDocuments(logs: Record<string, unknown>[]): EmfDocument[] {
  return logs
    .filter((l) => typeof l._aws === 'object' && l._aws !== null)
    .map((l) => {
      const directive = (l._aws as { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] })
        .CloudWatchMetrics[0]!;
      const metrics: Record<string, number> = {};
      for (const { Name } of directive.Metrics) {
        const v = l[Name] as number | number[];
        metrics[Name] = Array.isArray(v) ? v.reduce((a, b) => a + b, 0) : v;
      }
      const dimensions = Object.fromEntries((directive.Dimensions[0] ?? []).map((d) => [d, String(l[d])]));
      return { metrics, dimensions, namespace: directive.Namespace };
    });
}

/** Sums each metric over the documents. */
function totals(docs: EmfDocument[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of docs) for (const [k, v] of Object.entries(d.metrics)) out[k] = (out[k] ?? 0) + v;
  return out;
}

describe('metrics (EMF) and the consistency inspector', () => {
  let stack: TestStack;
  /** Every metric name printed by the handlers in this file. */
  const emitted = new Set<string>();
  /** One invocation of a handler: its EMF documents (each metric name remembered). */
  async function invoke<T>(
    fn: () => Promise<T>,
  ): Promise<{ result: T; docs: EmfDocument[]; logs: Record<string, unknown>[]; lines: string[] }> {
    const { result, logs, lines } = await logsDuring(fn);
    const docs = emfDocuments(logs);
    for (const d of docs) for (const name of Object.keys(d.metrics)) emitted.add(name);
    return { result, docs, logs, lines };
  }
  /** The invocation's one flush of the library's counts (the documents without a route or a cold start). */
  const counters = (docs: EmfDocument[]): EmfDocument[] => docs.filter((d) => !('route' in d.dimensions) && !('ColdStart' in d.metrics));

  /** The node the first test kills (the second brings it back), and the other one. */
  let killed: RedisServer;
  let live: RedisServer;
  /** A user whose entry lives on `server` (the tag tells users of different tests apart). */
  const userOn = (cache: ItemCache, server: RedisServer, tag: string): string => {
    for (let i = 0; ; i++) if (stack.serverOf(cache, cache.resolve('users', { userId: `${tag}-${i}` })) === server) return `${tag}-${i}`;
  };
  before(async () => {
    stack = await startStack({ shards: 2, parking: true });
    [live, killed] = stack.servers as [RedisServer, RedisServer];
  });
  after(async () => stack.stop());

  test('HTTP handlers: hits, a miss, a bypass during a killed node, a write stored and one refused (strict), each invocation one flush', async () => {
    // Prepare: a and b on the live node, c on the node to be killed.
    // Lambda's own variable: Powertools counts a cold start only for an on-demand initialization.
    process.env.AWS_LAMBDA_INITIALIZATION_TYPE = 'on-demand';
    const cache = stack.cache({ CACHE_METRICS_NAMESPACE: 'test-metrics' });
    const a = userOn(cache, live, 'metrics-a');
    const b = userOn(cache, live, 'metrics-b');
    const c = userOn(cache, killed, 'metrics-c');
    const app = createHttpApp(cache, allRoutes);
    const strictApp = createHttpApp(stack.cache({ CACHE_WRITE_POLICY: 'strict' }), allRoutes);
    delete process.env.AWS_LAMBDA_INITIALIZATION_TYPE;
    const item = (id: string): string => `/tables/users/items/${id}`;
    const all: EmfDocument[] = [];
    const step = async (what: string, event: ReturnType<typeof apiEvent>, status: number, xCache?: string, run = app) => {
      const { result, docs } = await invoke(() => run(event, { functionName: 'read' }));
      assert.equal(result.statusCode, status, `${what}: ${result.body}`);
      if (xCache) assert.equal(result.headers?.['x-cache'], xCache, what);
      assert.equal(counters(docs).length, 1, `${what}: one flush of the counters`);
      const latency = docs.filter((d) => 'route' in d.dimensions);
      assert.equal(latency.length, 1, `${what}: its latency, in a document of its own`);
      assert.equal(latency[0]!.dimensions.route, `${event.requestContext.http.method} /tables/{table}/items/{hash}`);
      assert.ok(latency[0]!.metrics.Latency! >= 0);
      all.push(...counters(docs));
      return docs;
    };

    // Act
    const first = await step('put a', apiEvent('PUT', item(a), { body: { name: 'Ada' } }), 200);
    await step('get a', apiEvent('GET', item(a)), 200, 'hit');
    await step('get b', apiEvent('GET', item(b)), 404, 'miss');
    await step('get b again', apiEvent('GET', item(b)), 404, 'hit');
    await killed.kill();
    const nodeB = cache.nodeFor(cache.resolve('users', { userId: c }))!;
    await eventually('the client sees node B gone', async () => nodeB.client.status !== 'ready');
    const bypassed = await step('get c', apiEvent('GET', item(c)), 404, 'bypass');
    await step('strict put c', apiEvent('PUT', item(c), { body: { name: 'Cy' } }), 503, undefined, strictApp);

    // Assess
    assert.deepEqual(
      first.filter((d) => 'ColdStart' in d.metrics).map((d) => d.dimensions),
      [{ service: 'dynamo-redis-cache', function_name: 'read' }],
      'the cold start, once',
    );
    for (const d of all) {
      assert.equal(d.namespace, d === all[all.length - 1] ? 'dynamo-redis-cache' : 'test-metrics');
      assert.deepEqual(d.dimensions, { service: 'dynamo-redis-cache' });
    }
    const sum = totals(all);
    assert.equal(sum.ReadHit, 2);
    assert.equal(sum.ReadMiss, 1);
    assert.equal(sum.ReadBypass, 1);
    assert.equal(sum.FillReads, 1);
    assert.equal(sum.WriteStored, 1);
    assert.equal(sum.WriteRefused, 1);
    assert.equal(sum.NodeStatusChanges, 2, 'node B went down for each of the two containers');
    assert.equal(sum.LeaseWaits, undefined);
    assert.equal(counters(bypassed)[0]!.metrics.NodesNotUp, 1);
    assert.equal(all[0]!.metrics.NodesNotUp, 0);
  });

  test('stream consumer, replayer and sweep: an invalidation, a record left alone, a record whose change the entry holds, records parked, replayed and swept, one failed without a parking table', async () => {
    // Prepare: the killed node is still down (the test above killed it).
    const consumer = stack.cache();
    const handler = createStreamHandler(consumer, new ConsistencyInspector(consumer, { sampleRate: 0 }));
    const a = userOn(consumer, live, 'stream-a');
    const [c1, c2] = [userOn(consumer, killed, 'stream-c1'), userOn(consumer, killed, 'stream-c2')];
    const record = (userId: string, seq: string): DynamoDBRecord => streamRecord(stack, 'users', { userId: { S: userId } }, seq);
    const foreign: DynamoDBRecord = { ...record('x', '102'), eventSourceARN: 'arn:aws:dynamodb:us-east-1:0:table/another/stream/1' };
    const created = record('x', '0').dynamodb!.ApproximateCreationDateTime!;
    const replayer = stack.cache();
    const replay = createReplayHandler(replayer);
    const parkingRecord = async (userId: string): Promise<DynamoDBRecord> => {
      const items = (await stack.dynamo.send(new ScanCommand({ TableName: stack.parkingTable, ConsistentRead: true }))).Items ?? [];
      const mine = items.filter((p) => p.keys?.S?.includes(`"${userId}"`));
      assert.equal(mine.length, 1, `${userId} parked once`);
      return { eventID: userId, eventName: 'INSERT', dynamodb: { SequenceNumber: '1', NewImage: mine[0] } as DynamoDBRecord['dynamodb'] };
    };

    // A library write and its own record (a new image): the entry already holds that change (issue 13).
    const k = userOn(consumer, live, 'stream-k');
    await consumer.put('users', { userId: k, name: 'kept' });
    const image = (
      await stack.dynamo.send(new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: k } }, ConsistentRead: true }))
    ).Item as Record<string, never>;
    const own = streamRecord(stack, 'users', { userId: { S: k } }, '105', 'NEW_IMAGE', { NewImage: image });

    // Act 1: the consumer; then one without a parking table.
    const before = Date.now();
    const consumed = await invoke(() => handler(batch(record(a, '100'), record(c1, '101'), foreign, record(c2, '103'), own)));
    const unparked = await invoke(() => createStreamHandler(stack.cache({ STREAM_PARKING_TABLE: '' }))(batch(record(c1, '104'))));
    // Act 2: the replayer, while the node is still away.
    const early = await invoke(async () => replay(batch(await parkingRecord(c1), await parkingRecord(c2))));
    // Act 3: the node back: the replayer again (c1), then the scheduled sweep (c2).
    await killed.startAgain();
    const replayersNode = replayer.nodeFor(replayer.resolve('users', { userId: c1 }))!;
    await eventually('the replayer reconnected', async () => replayersNode.client.status === 'ready');
    const late = await invoke(async () => replay(batch(await parkingRecord(c1))));
    const swept = await invoke(() => createSweepHandler(stack.cache())({}));

    // Assess
    assert.deepEqual(consumed.result.batchItemFailures, []);
    const c = counters(consumed.docs);
    assert.equal(c.length, 1);
    assert.equal(c[0]!.metrics.StreamRecords, 5);
    assert.equal(c[0]!.metrics.StreamInvalidations, 1);
    assert.equal(c[0]!.metrics.StreamRecordsKept, 1);
    assert.equal(c[0]!.metrics.StreamRecordsParked, 2);
    assert.equal(c[0]!.metrics.StreamRecordsSkipped, 1);
    assert.equal(c[0]!.metrics.StreamRecordsFailed, undefined);
    const age = c[0]!.metrics.StreamAge!;
    assert.ok(Math.abs(age - Math.round((before - created * 1000) / 1000)) <= 5, `stream age ${age} s`);
    assert.equal(c[0]!.metrics.NodesNotUp, 1);
    assert.deepEqual(unparked.result.batchItemFailures, [{ itemIdentifier: '104' }]);
    assert.equal(counters(unparked.docs)[0]!.metrics.StreamRecordsFailed, 1);
    assert.equal(counters(early.docs)[0]!.metrics.ParkedLeftForSweep, 2);
    assert.equal(counters(early.docs)[0]!.metrics.ParkedReplayed, undefined);
    assert.equal(counters(late.docs)[0]!.metrics.ParkedReplayed, 1);
    const s = counters(swept.docs);
    assert.deepEqual(swept.result, { applied: 1, deferred: 0, waiting: 0, expired: 0, skipped: 0, failed: 0, complete: true });
    assert.equal(s[0]!.metrics.SweepApplied, 1);
    assert.equal(s[0]!.metrics.SweepDeferred, 0);
    assert.equal(s[0]!.metrics.ParkedBacklog, 0);
    assert.equal(s[0]!.metrics.NodesNotUp, 0, 'the sweep asked every node');
  });

  test("a reader that waits for another reader's fill, and a write whose entry an invalidation dropped meanwhile", async () => {
    // Prepare: the first reader holds its lease until the second is waiting; the writer is
    // overtaken by an invalidation between its commit and its end.
    const gate = new Gate();
    const invalidator = stack.cache();
    const userId = userOn(invalidator, live, 'waits');
    await invalidator.put('users', { userId, name: 'w' });
    await invalidator.invalidate(invalidator.resolve('users', { userId }));
    const reader = stack.cache({}, { hooks: { afterLease: () => gate.hold(), leaseWait: () => gate.open() } });
    const writer = stack.cache(
      {},
      {
        hooks: {
          afterCommit: async () => {
            await invalidator.invalidate(invalidator.resolve('users', { userId }));
          },
        },
      },
    );
    const read = createHttpApp(reader, allRoutes);
    const write = createHttpApp(writer, allRoutes);

    // Act
    // One capture around both: captures that overlap would each see the other's lines.
    const both = await invoke(() =>
      Promise.all([read(apiEvent('GET', `/tables/users/items/${userId}`)), read(apiEvent('GET', `/tables/users/items/${userId}`))]),
    );
    const written = await invoke(() => write(apiEvent('PUT', `/tables/users/items/${userId}`, { body: { name: 'x' } })));

    // Assess
    assert.deepEqual(
      both.result.map((r) => r.headers?.['x-cache']),
      ['miss', 'hit'],
    );
    const reads = totals(counters(both.docs));
    assert.equal(reads.LeaseWaits, 1);
    assert.equal(reads.FillReads, 1, 'one DynamoDB read for the two misses (G5)');
    assert.equal(reads.ReadMiss, 1);
    assert.equal(reads.ReadHit, 1);
    assert.equal(written.result.statusCode, 200);
    assert.equal(counters(written.docs)[0]!.metrics.WriteInvalidated, 1);
    assert.equal(counters(written.docs)[0]!.metrics.WriteStored, undefined);
  });

  /** A key on a live node, written twice through `writer`: DynamoDB holds version 2; returns v1's raw entry. */
  async function twoVersions(writer: ItemCache, userId: string): Promise<{ redisKey: string; raw: Redis; v1Entry: string }> {
    const rk = writer.resolve('users', { userId });
    const raw = new Redis(stack.serverOf(writer, rk).port, '127.0.0.1');
    await writer.put('users', { userId, name: 'v1' });
    const v1Entry = (await raw.hget(rk.redisKey, 'd')) as string;
    assert.ok(v1Entry, 'the first write stored its entry');
    await writer.put('users', { userId, name: 'v2' });
    // The record comes later, as a stream's lag has it: the inspector dates an entry to within its own
    // round trip (on the late side), so one stored a moment before the invalidation is not told apart.
    await new Promise((r) => setTimeout(r, 300));
    return { redisKey: rk.redisKey, raw, v1Entry };
  }

  for (const mode of ['plain', 'hash'] as const) {
    test(`inspector: an entry older than DynamoDB's written straight into Redis after the record's invalidation (as if the invalidation had been dropped) is reported (CACHE_LOG_KEYS=${mode})`, async () => {
      // Prepare
      const logEnv = { CACHE_LOG_KEYS: mode, ...(mode === 'hash' ? { CACHE_LOG_KEYS_SECRET: 'a-log-key-secret-of-32-characters' } : {}) };
      const writer = stack.cache();
      const userId = userOn(writer, live, `inspect-stale-${mode}`);
      const { redisKey, raw, v1Entry } = await twoVersions(writer, userId);
      const consumer = stack.cache(logEnv);
      const inspector = new ConsistencyInspector(consumer, { sampleRate: 1, delayMs: 200 });
      const handler = createStreamHandler(consumer, inspector);
      try {
        // Act: the record of the second write is applied and sampled; then the old entry comes back.
        const applied = await invoke(() => handler(batch(streamRecord(stack, 'users', { userId: { S: userId } }, '200'))));
        assert.equal(await raw.hget(redisKey, 'd'), null, 'the invalidation removed the entry');
        assert.equal(inspector.waiting, 1);
        await raw.hset(redisKey, 'd', v1Entry, 'v', '1');
        await new Promise((r) => setTimeout(r, 250));
        const checked = await invoke(() => handler(batch()));

        // Assess: nothing checked before the delay, one inconsistency after it.
        assert.equal(counters(applied.docs)[0]!.metrics.InspectorChecks, undefined);
        const m = counters(checked.docs)[0]!.metrics;
        assert.equal(m.InspectorChecks, 1);
        assert.equal(m.Inconsistencies, 1);
        const line = checked.logs.filter((l) => l.message === 'CACHE_INCONSISTENCY');
        assert.equal(line.length, 1);
        assert.equal(line[0]!.level, 'ERROR');
        assert.equal(line[0]!.itemKey, loggedKey(redisKey, consumer.config.cache.logKeys));
        assert.equal(line[0]!.cachedVersion, 1);
        assert.equal(line[0]!.dynamoVersion, 2);
        assert.ok((line[0]!.entryAgeMs as number) >= (line[0]!.sinceInvalidationMs as number), 'the entry is older than the invalidation');
        assert.ok((line[0]!.sinceInvalidationMs as number) >= 200);
        if (mode === 'hash') {
          assert.match(String(line[0]!.itemKey), /^hmac:/);
          assert.ok(!checked.lines.join('\n').includes(userId), 'the plain key appears nowhere');
        }
        // What the inspector reported is what a reader is served.
        assert.deepEqual((await writer.get('users', { userId })).item, { userId, name: 'v1' });
      } finally {
        raw.disconnect();
      }
    });
  }

  test('inspector: no inconsistency when the invalidation removed the old entry and a reader refilled it, not even once a later out-of-band change (its record still to come) makes the refill old', async () => {
    // Prepare: the old entry is planted before the record is applied: the invalidation must take it.
    const writer = stack.cache();
    const userId = userOn(writer, live, 'inspect-clean');
    const { redisKey, raw, v1Entry } = await twoVersions(writer, userId);
    await raw.hset(redisKey, 'd', v1Entry, 'v', '1');
    const consumer = stack.cache();
    const inspector = new ConsistencyInspector(consumer, { sampleRate: 1, delayMs: 200 });
    const handler = createStreamHandler(consumer, inspector);
    try {
      // Act: applied; a reader fills version 2 (an entry stored after the invalidation); then the check.
      await invoke(() => handler(batch(streamRecord(stack, 'users', { userId: { S: userId } }, '300'))));
      const read = await writer.get('users', { userId });
      // A change straight in DynamoDB whose record has not reached the consumer: G2's lag, not an inconsistency.
      await stack.dynamo.send(
        new PutItemCommand({
          TableName: `${stack.prefix}users`,
          Item: { userId: { S: userId }, name: { S: 'out of band' }, _version: { N: '3' } },
        }),
      );
      await new Promise((r) => setTimeout(r, 250));
      const checked = await invoke(() => handler(batch()));

      // Assess
      assert.equal(read.cache, 'miss');
      assert.ok(await raw.hget(redisKey, 'd'), 'the check met an entry (the refill)');
      assert.deepEqual((await writer.get('users', { userId })).item, { userId, name: 'v2' }, 'the refill, older than DynamoDB now');
      const m = counters(checked.docs)[0]!.metrics;
      assert.equal(m.InspectorChecks, 1);
      assert.equal(m.Inconsistencies, undefined);
      assert.deepEqual(
        checked.logs.filter((l) => l.message === 'CACHE_INCONSISTENCY'),
        [],
      );
    } finally {
      raw.disconnect();
    }
  });

  test('inspector: no inconsistency for an entry a record kept (its image is what the entry holds), once a later out-of-band change (its record still to come) makes it old', async () => {
    // Prepare: a library write stores v1 with its version and digest; its own record (NEW_IMAGE) will find it.
    const writer = stack.cache();
    const userId = userOn(writer, live, 'inspect-kept');
    const rk = writer.resolve('users', { userId });
    const raw = new Redis(stack.serverOf(writer, rk).port, '127.0.0.1');
    const written = await writer.put('users', { userId, name: 'v1' });
    const version = String(written.version);
    // The record comes later, as a stream's lag has it, so the entry is older than the invalidation.
    await new Promise((r) => setTimeout(r, 300));
    const consumer = stack.cache();
    const inspector = new ConsistencyInspector(consumer, { sampleRate: 1, delayMs: 200 });
    const handler = createStreamHandler(consumer, inspector);
    try {
      // Act: the write's own record is applied (the entry is kept) and sampled; then a change straight
      // in DynamoDB whose record has not reached the consumer; then the check.
      const image = { userId: { S: userId }, name: { S: 'v1' }, _version: { N: version } };
      const applied = await invoke(() =>
        handler(batch(streamRecord(stack, 'users', { userId: { S: userId } }, '400', 'NEW_IMAGE', { NewImage: image }))),
      );
      await stack.dynamo.send(
        new PutItemCommand({
          TableName: `${stack.prefix}users`,
          Item: { userId: { S: userId }, name: { S: 'out of band' }, _version: { N: String(Number(version) + 1) } },
        }),
      );
      await new Promise((r) => setTimeout(r, 250));
      const checked = await invoke(() => handler(batch()));

      // Assess: the record kept the entry (it is the one stored before the invalidation); the check ran
      // and found no inconsistency: the entry agrees with the record, and DynamoDB's newer state is lag.
      assert.equal(counters(applied.docs)[0]!.metrics.StreamRecordsKept, 1);
      assert.ok(await raw.hget(rk.redisKey, 'd'), 'the kept entry is still there');
      const m = counters(checked.docs)[0]!.metrics;
      assert.equal(m.InspectorChecks, 1);
      assert.equal(m.Inconsistencies, undefined);
      assert.deepEqual(
        checked.logs.filter((l) => l.message === 'CACHE_INCONSISTENCY'),
        [],
      );
    } finally {
      raw.disconnect();
    }
  });

  test('every metric infra/monitoring.yml names (dashboard and alarms) is one the code emits, and was printed above', () => {
    // Prepare
    const doc = yaml.load(readFileSync(new URL('../../infra/monitoring.yml', import.meta.url), 'utf8')) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const body = (doc.Resources.MonitoringDashboard!.Properties.DashboardBody as { 'Fn::Sub': string })['Fn::Sub'];
    // Act
    const named = [...dashboardMetrics(body), ...alarmMetrics(doc.Resources)].filter((m) => m.namespace !== 'AWS/Lambda');
    // Assess
    assert.ok(named.length > 20, `${named.length} metrics named`);
    for (const m of named) {
      assert.equal(m.namespace, '${self:service}-${sls:stage}', m.name);
      assert.ok(m.name in METRICS, `${m.name} is declared in lib/metrics.ts`);
      assert.ok(emitted.has(m.name), `${m.name} was printed by a handler in this file (printed: ${[...emitted].sort().join(', ')})`);
    }
  });
});
