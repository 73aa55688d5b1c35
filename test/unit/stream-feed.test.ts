/**
 * The local feed's ordering rules, without a service: shards parent before child, sequence numbers
 * compared as numbers of any length (DynamoDB Local's are fixed-width, AWS's are not).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { _Record as StreamRecord, Shard } from '@aws-sdk/client-dynamodb-streams';
import { compareSequence, eachRecord } from '../../lib/stream/batch.ts';
import { recordsFrom, shardsToStart } from '../../infra/local/stream-feed.ts';

const shard = (ShardId: string, ParentShardId?: string): Shard => ({ ShardId, ...(ParentShardId ? { ParentShardId } : {}) });
const ids = (shards: Shard[]) => shards.map((s) => s.ShardId);
const rec = (seq: string): StreamRecord => ({ dynamodb: { SequenceNumber: seq } });

describe('shard order: a child only after its parent', () => {
  test('a child listed before its parent waits for the parent, which starts first', () => {
    // Prepare: DescribeStream does not promise parents first.
    const listed = [shard('child-1', 'parent'), shard('parent'), shard('child-2', 'parent')];
    // Act / Assess
    assert.deepEqual(ids(shardsToStart(listed, new Set(), new Set())), ['parent']);
    assert.deepEqual(ids(shardsToStart(listed, new Set(['parent']), new Set())), [], 'the parent is still being read');
    assert.deepEqual(ids(shardsToStart(listed, new Set(['parent']), new Set(['parent']))), ['child-1', 'child-2']);
  });

  test('a grandchild waits for its own parent, not only the root', () => {
    const listed = [shard('root'), shard('mid', 'root'), shard('leaf', 'mid')];
    assert.deepEqual(ids(shardsToStart(listed, new Set(['root']), new Set(['root']))), ['mid']);
    assert.deepEqual(ids(shardsToStart(listed, new Set(['root', 'mid']), new Set(['root', 'mid']))), ['leaf']);
  });

  test('a parent trimmed from the stream (no longer listed, never read) does not hold its child', () => {
    assert.deepEqual(ids(shardsToStart([shard('orphan', 'gone')], new Set(), new Set())), ['orphan']);
  });

  test('a shard is started once', () => {
    assert.deepEqual(ids(shardsToStart([shard('a'), shard('b')], new Set(['a']), new Set())), ['b']);
  });
});

describe('sequence numbers of varying length', () => {
  test('compared as numbers, not as strings', () => {
    assert.ok(compareSequence('9', '10') < 0);
    assert.ok(compareSequence('99999999999999999999', '100000000000000000000') < 0);
    assert.ok(compareSequence('4700000000000000000000000001', '470000000000000000000000001') > 0);
    assert.equal(compareSequence('000123', '000123'), 0);
    const sorted = ['100', '9', '1000000000000000000000', '21', '3'].sort(compareSequence);
    assert.deepEqual(sorted, ['3', '9', '21', '100', '1000000000000000000000']);
  });

  test('a retry from the lowest failed record keeps it and every later one, whatever their lengths', () => {
    const records = ['8', '9', '10', '11', '100'].map(rec);
    assert.deepEqual(
      recordsFrom(records, '10').map((r) => r.dynamodb?.SequenceNumber),
      ['10', '11', '100'],
    );
    assert.deepEqual(
      recordsFrom(records, '9').map((r) => r.dynamodb?.SequenceNumber),
      ['9', '10', '11', '100'],
    );
  });

  test('the batch answer lists failures in stream order, so Lambda retries from the lowest', async () => {
    const records = ['100', '99', '1000', '9'].map((seq) => ({ dynamodb: { SequenceNumber: seq } }));
    const res = await eachRecord(records, async () => false);
    assert.deepEqual(
      res.batchItemFailures.map((f) => f.itemIdentifier),
      ['9', '99', '100', '1000'],
    );
  });
});
