/**
 * How long stream records are retried (lib/stream/window.ts, infra/stream-mappings.cjs): long
 * enough for every table's entry TTL plus lease and fence, and never longer than the stream keeps
 * records. Per-table TTLs count as much as CACHE_TTL_SECONDS.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import streamMappings from '../../infra/stream-mappings.cjs';
import { ConfigError, defineTable, exampleTables, ItemCache, loadConfig } from '../../lib/index.ts';
import { checkRetryWindow, fillMarginSeconds } from '../../lib/stream/window.ts';
import { createStreamHandler } from '../../functions/stream.ts';
import { createReplayHandler } from '../../functions/replay.ts';
import { createSweepHandler } from '../../functions/sweep.ts';

const base = { CACHE_MODE: 'off' };
const sessions = defineTable({ name: 'sessions', hashKey: { name: 'id', type: 'S' }, ttlSeconds: 7200 });
const refuses = (fn: () => unknown, variable: string, message: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && e.variable === variable && message.test(e.message));

describe('the retry window covers the largest entry TTL', () => {
  test('derived from the largest TTL, a per-table one included, plus lease and fence', () => {
    // Prepare
    const config = loadConfig(base);
    const margin = fillMarginSeconds(config);
    // Assess
    assert.ok(margin * 1000 > config.cache.leaseMs, 'the margin holds the lease at least');
    assert.equal(checkRetryWindow(config, exampleTables), 3600 + margin);
    assert.equal(checkRetryWindow(config, [...exampleTables, sessions]), 7200 + margin);
  });

  test('a window the deploy set too short for a table’s own TTL is refused, naming the setting', () => {
    const config = loadConfig({ ...base, STREAM_RETRY_WINDOW_SECONDS: '3900' });
    assert.equal(checkRetryWindow(config, exampleTables), 3900);
    refuses(() => checkRetryWindow(config, [...exampleTables, sessions]), 'STREAM_RETRY_WINDOW_SECONDS', /'sessions'.*7200 s/);
  });

  test('a TTL no window can cover (the stream keeps records 24 h) is refused, naming where it is set', () => {
    refuses(
      () => checkRetryWindow(loadConfig({ ...base, CACHE_TTL_SECONDS: String(30 * 86400) }), exampleTables),
      'CACHE_TTL_SECONDS',
      /86400 s/,
    );
    const long = defineTable({ name: 'archive', hashKey: { name: 'id', type: 'S' }, ttlSeconds: 86400 });
    refuses(() => checkRetryWindow(loadConfig(base), [...exampleTables, long]), 'tables.archive.ttlSeconds', /86400 s/);
    // A table that is not cached has no entries to outlive.
    const uncached = defineTable({ name: 'ledger', hashKey: { name: 'id', type: 'S' }, ttlSeconds: 86400, cached: false });
    assert.equal(checkRetryWindow(loadConfig(base), [...exampleTables, uncached]), 3600 + fillMarginSeconds(loadConfig(base)));
  });

  test('STREAM_RETRY_WINDOW_SECONDS within Lambda’s limits on a record age', () => {
    refuses(() => loadConfig({ ...base, STREAM_RETRY_WINDOW_SECONDS: '30' }), 'STREAM_RETRY_WINDOW_SECONDS', /60 to 86400/);
    refuses(() => loadConfig({ ...base, STREAM_RETRY_WINDOW_SECONDS: 'soon' }), 'STREAM_RETRY_WINDOW_SECONDS', /whole number/);
  });

  test('the stream functions refuse to start when the window does not cover their tables', async () => {
    const env = { ...base, STREAM_PARKING_TABLE: 'p-parked-invalidations', STREAM_RETRY_WINDOW_SECONDS: '3900' };
    const cache = new ItemCache({ config: loadConfig(env), tables: [...exampleTables, sessions] });
    try {
      for (const create of [createStreamHandler, createReplayHandler, createSweepHandler]) {
        refuses(() => create(cache), 'STREAM_RETRY_WINDOW_SECONDS', /sessions/);
      }
    } finally {
      await cache.close();
    }
  });
});

describe('infra/stream-mappings.cjs: what the deploy and the local feed both take', () => {
  const resolveWith = (params: Record<string, number>) =>
    streamMappings({ resolveVariable: async (v: string) => params[v.replace(/^param:/, '')] });

  test('every mapping from the trim horizon, retried until the largest TTL plus the margin', async () => {
    assert.deepEqual(await resolveWith({ cacheTtlSeconds: 3600, largestTableTtlSeconds: 0 }), {
      startingPosition: 'TRIM_HORIZON',
      batchSize: 100,
      functionResponseType: 'ReportBatchItemFailures',
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: -1,
      maximumRecordAgeInSeconds: 3600 + streamMappings.FILL_MARGIN_SECONDS,
    });
    const perTable = await resolveWith({ cacheTtlSeconds: 3600, largestTableTtlSeconds: 7200 });
    assert.equal(perTable.maximumRecordAgeInSeconds, 7200 + streamMappings.FILL_MARGIN_SECONDS);
  });

  test('its margin covers the library’s lease and fence at the default settings', () => {
    assert.ok(streamMappings.FILL_MARGIN_SECONDS >= fillMarginSeconds(loadConfig(base)));
  });

  test('a TTL past what the stream keeps fails the package, naming the params', async () => {
    await assert.rejects(
      resolveWith({ cacheTtlSeconds: 30 * 86400, largestTableTtlSeconds: 0 }),
      /cacheTtlSeconds, largestTableTtlSeconds/,
    );
    await assert.rejects(resolveWith({ cacheTtlSeconds: 3600, largestTableTtlSeconds: 86400 }), /86400 s/);
  });
});
