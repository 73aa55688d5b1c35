import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CacheMetrics, METRICS, streamAgeSeconds } from '../../lib/index.ts';

describe('CacheMetrics: what one invocation publishes', () => {
  test('counters add up, levels keep the largest, take() empties them, in declaration order', () => {
    // Prepare
    const m = new CacheMetrics();
    // Act
    m.level('NodesNotUp', 2);
    m.count('ReadHit');
    m.count('ReadHit', 3);
    m.level('NodesNotUp', 1);
    m.count('StreamRecords', 0);
    const first = m.take();
    const second = m.take();
    // Assess
    assert.deepEqual(first, [
      { name: 'ReadHit', unit: 'Count', value: 4 },
      { name: 'NodesNotUp', unit: 'Count', value: 2 },
      { name: 'StreamRecords', unit: 'Count', value: 0 },
    ]);
    assert.deepEqual(second, []);
  });

  test('every metric has a CloudWatch unit and a way to combine', () => {
    for (const [name, { unit, combine }] of Object.entries(METRICS)) {
      assert.ok(['Count', 'Milliseconds', 'Seconds'].includes(unit), name);
      assert.ok(['sum', 'max'].includes(combine), name);
      assert.match(name, /^[A-Z][A-Za-z]{2,254}$/);
    }
  });
});

describe('streamAgeSeconds: the oldest record of a batch', () => {
  const now = Date.UTC(2026, 0, 1, 0, 10, 0);
  test("Lambda's epoch seconds and the SDK's Date alike; the oldest wins", () => {
    const records = [
      { dynamodb: { ApproximateCreationDateTime: now / 1000 - 5 } },
      { dynamodb: { ApproximateCreationDateTime: new Date(now - 90_000) } },
      { dynamodb: {} },
    ];
    assert.equal(streamAgeSeconds(records, now), 90);
  });

  test('no record carries a time: no age; a clock behind the record: 0', () => {
    assert.equal(streamAgeSeconds([{ dynamodb: {} }, {}], now), undefined);
    assert.equal(streamAgeSeconds([{ dynamodb: { ApproximateCreationDateTime: now / 1000 + 3 } }], now), 0);
  });
});
