/**
 * The run over time, as a picture (issue 14): hit ratio and read latency per time bin, with the
 * fault windows shaded, drawn from the history the harness writes (records and fault windows).
 */
import { readFileSync } from 'node:fs';
import { lineChart } from '../bench/charts.ts';
import type { FaultWindow, OpRecord } from './history.ts';

/** The history file's records and fault windows (harness.ts writes one JSON object a line). */
export function readHistory(path: string): { records: OpRecord[]; windows: FaultWindow[] } {
  const records: OpRecord[] = [];
  const windows: FaultWindow[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    const o = JSON.parse(line) as { fault?: FaultWindow; oob?: unknown } & Partial<OpRecord>;
    if (o.fault) windows.push(o.fault);
    else if (o.oob === undefined && typeof o.start === 'number') records.push(o as OpRecord);
  }
  return { records, windows };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Two SVG charts: the hit ratio of reads, and their p50/p99 latency, per `binMs`, faults shaded. */
export function timelineCharts(records: OpRecord[], windows: FaultWindow[], binMs = 5000): { hitRatio: string; latency: string } {
  const reads = records.filter((r) => !r.sweep && r.source !== undefined && r.client.startsWith('w'));
  // A loop, not Math.min(...spread): a 10-minute run has more reads than a call takes arguments.
  let t0 = Infinity;
  for (const r of reads) if (r.start < t0) t0 = r.start;
  for (const w of windows) if (w.start < t0) t0 = w.start;
  const bins = new Map<number, { hits: number; all: number; lat: number[] }>();
  for (const r of reads) {
    const b = Math.floor((r.end - t0) / binMs);
    const bin = bins.get(b) ?? { hits: 0, all: 0, lat: [] };
    bin.all++;
    if (r.source === 'hit') bin.hits++;
    bin.lat.push(r.end - r.start);
    bins.set(b, bin);
  }
  const ordered = [...bins.entries()].sort((a, b) => a[0] - b[0]);
  const x = (b: number): number => ((b + 0.5) * binMs) / 1000;
  const bands = windows.map((w) => ({ start: (w.start - t0) / 1000, end: (w.end - t0) / 1000, label: w.kind }));
  const hitRatio = lineChart({
    title: `Hit ratio of the containers' reads per ${binMs / 1000} s, fault windows shaded`,
    xLabel: 'seconds into the run',
    yLabel: 'hit ratio',
    yMin: 0,
    yMax: 1,
    series: [{ name: 'hits / reads', points: ordered.map(([b, v]) => [x(b), v.hits / v.all]) }],
    bands,
  });
  const latency = lineChart({
    title: `Read latency per ${binMs / 1000} s (ms), fault windows shaded`,
    xLabel: 'seconds into the run',
    yLabel: 'ms',
    series: (['p50', 'p99'] as const).map((p) => ({
      name: p,
      points: ordered.map(
        ([b, v]) =>
          [
            x(b),
            percentile(
              [...v.lat].sort((a, c) => a - c),
              p === 'p50' ? 50 : 99,
            ),
          ] as [number, number],
      ),
    })),
    bands,
  });
  return { hitRatio, latency };
}
