/** The SVG charts the bench and the consistency run write (bench/charts.ts, consistency/timeline.ts). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { latencyDistributions, lineChart } from '../../bench/charts.ts';
import { timelineCharts } from '../../consistency/timeline.ts';
import type { FaultWindow, OpRecord } from '../../consistency/history.ts';

describe('charts', () => {
  test('a line chart draws one polyline per series, a legend, and its bands behind them', () => {
    const svg = lineChart({
      title: 'T <&>',
      xLabel: 'x',
      yLabel: 'y',
      series: [
        {
          name: 'a',
          points: [
            [0, 1],
            [1, 2],
            [2, 3],
          ],
        },
        {
          name: 'b',
          points: [
            [0, 3],
            [2, 1],
          ],
        },
      ],
      bands: [{ start: 0.5, end: 1.5, label: 'kill' }],
    });
    assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.equal(svg.match(/<polyline /g)?.length, 2);
    assert.match(svg, /T &lt;&amp;&gt;/);
    assert.match(svg, /<title>kill<\/title>/);
    assert.ok(svg.indexOf('<title>kill</title>') < svg.indexOf('<polyline'), 'the band is drawn first, behind the lines');
  });

  test('latency distributions: x on a log scale, y the share from 0 to 1', () => {
    const q = Array.from({ length: 101 }, (_, i) => 100 + i * 10);
    const svg = latencyDistributions('L', { hit: q, miss: q.map((v) => v * 10) });
    assert.equal(svg.match(/<polyline /g)?.length, 2);
    for (const tick of ['>100<', '>1,000<', '>10,000<']) assert.ok(svg.includes(tick), tick);
  });

  test("the consistency timeline bins the containers' reads: hit ratio and latency, faults shaded", () => {
    const read = (start: number, source: string): OpRecord =>
      ({
        op: start,
        client: 'w0',
        kind: 'get',
        key: 'u/1',
        hot: false,
        value: 'x',
        start,
        end: start + 2,
        outcome: 'ok',
        source,
        dynamoMs: 0,
        dynamoCalls: 0,
        dynamoReads: 0,
      }) as unknown as OpRecord;
    const records = [read(0, 'hit'), read(100, 'miss'), read(6000, 'hit'), read(6100, 'hit')];
    const windows = [{ kind: 'kill', target: 'shard0', start: 5000, end: 7000 } as FaultWindow];
    const { hitRatio, latency } = timelineCharts(records, windows, 5000);
    // Two bins: 1 hit of 2, then 2 of 2.
    const points = hitRatio.match(/points="([^"]+)"/)?.[1]?.split(' ') ?? [];
    assert.equal(points.length, 2);
    assert.match(hitRatio, /<title>kill<\/title>/);
    assert.equal(latency.match(/<polyline /g)?.length, 2);
  });

  test('the consistency timeline of a 10-minute run (more reads than a call takes arguments) is drawn', () => {
    // 200,000 reads, as a 10-minute run of the available policy has (the chart failed there once).
    const records = Array.from(
      { length: 200_000 },
      (_, i) =>
        ({
          op: i,
          client: 'w0',
          kind: 'get',
          key: 'u/1',
          start: i * 3,
          end: i * 3 + 1,
          outcome: 'ok',
          source: 'hit',
        }) as unknown as OpRecord,
    );
    const { hitRatio } = timelineCharts(records, [], 5000);
    assert.equal(hitRatio.match(/points="([^"]+)"/)?.[1]?.split(' ').length, 120);
  });
});
