/**
 * Timing primitives. Every duration is taken with process.hrtime.bigint() around the awaited
 * operation only (set-up and warm-up are never inside a timed region), kept in microseconds.
 */

export interface RunStats {
  /** Operations timed. */
  ops: number;
  /** Concurrency the run used. */
  concurrency: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  /** Completed operations per second of wall-clock time (the whole run, all workers). */
  opsPerSec: number;
  /** p0, p1 … p100 (µs): the distribution, for the charts (bench/charts.ts). */
  quantilesUs?: number[];
}

function summarise(lat: Float64Array, concurrency: number, opsPerSec: number): RunStats {
  lat.sort();
  let sum = 0;
  for (const v of lat) sum += v;
  return {
    ops: lat.length,
    concurrency,
    p50Us: percentile(lat, 50),
    p99Us: percentile(lat, 99),
    meanUs: sum / Math.max(1, lat.length),
    opsPerSec,
    quantilesUs: lat.length === 0 ? [] : Array.from({ length: 101 }, (_, p) => (p === 0 ? (lat[0] as number) : percentile(lat, p))),
  };
}

/** Nearest-rank percentile of an ascending-sorted array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = finite.length >> 1;
  return finite.length % 2 === 1 ? (finite[mid] as number) : ((finite[mid - 1] as number) + (finite[mid] as number)) / 2;
}

/** `op(i, worker)` for i = 0 … total-1, spread over `concurrency` workers that each await their own op. */
export type Op = (i: number, worker: number) => Promise<unknown>;

/**
 * Runs `total` operations with `concurrency` workers pulling the next index from a shared counter
 * (a closed loop: each worker starts its next operation as soon as its previous one is answered).
 * Concurrency 1 is a plain sequential loop. Returns per-operation latencies and wall-clock throughput.
 */
export async function timedRun(total: number, concurrency: number, op: Op): Promise<RunStats> {
  const lat = new Float64Array(total);
  let next = 0;
  const worker = async (w: number): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const t0 = process.hrtime.bigint();
      await op(i, w);
      lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
    }
  };
  const start = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, (_, w) => worker(w)));
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  return summarise(lat, concurrency, total / elapsedS);
}

export interface PairedOp {
  name: string;
  op: Op;
  /** Timed on every `every`-th iteration only (for operations much slower than the others). */
  every?: number;
}

/**
 * Sequential (concurrency 1) latencies of several operations sampled side by side: iteration i runs
 * each operation once (those due), one after the other, starting from a different one each time.
 * On a shared machine whose speed changes from one second to the next, both sides of a ratio are
 * then sampled under the same conditions, which separate runs cannot promise. Throughput is
 * reported as 1 / mean latency.
 */
export async function pairedRun(iterations: number, ops: readonly PairedOp[]): Promise<Record<string, RunStats>> {
  const lat = ops.map((o) => new Float64Array(Math.ceil(iterations / (o.every ?? 1))));
  const filled = ops.map(() => 0);
  for (let i = 0; i < iterations; i++) {
    for (let k = 0; k < ops.length; k++) {
      const j = (i + k) % ops.length;
      const o = ops[j] as PairedOp;
      const every = o.every ?? 1;
      if (i % every !== 0) continue;
      const t0 = process.hrtime.bigint();
      await o.op(i / every, 0);
      (lat[j] as Float64Array)[(filled[j] as number)++] = Number(process.hrtime.bigint() - t0) / 1000;
    }
  }
  const out: Record<string, RunStats> = {};
  ops.forEach((o, j) => {
    const l = (lat[j] as Float64Array).subarray(0, filled[j]);
    const s = summarise(l, 1, 0);
    out[o.name] = { ...s, opsPerSec: 1e6 / s.meanUs };
  });
  return out;
}

/**
 * Throughput of several operations at the same concurrency, measured in alternating blocks (A B B A
 * A B …), each block a closed loop of `opsPerBlock`. Per operation: total operations / total time
 * over its blocks; latencies: the median of its blocks' percentiles.
 */
export async function alternatingBlocks(
  blocks: number,
  opsPerBlock: number,
  concurrency: number,
  ops: readonly { name: string; op: Op }[],
): Promise<Record<string, RunStats>> {
  const runs: Record<string, RunStats[]> = {};
  for (let b = 0; b < blocks; b++) {
    for (const o of b % 2 === 0 ? ops : [...ops].reverse()) (runs[o.name] ??= []).push(await timedRun(opsPerBlock, concurrency, o.op));
  }
  const out: Record<string, RunStats> = {};
  for (const o of ops) {
    const list = runs[o.name] as RunStats[];
    const seconds = list.reduce((n, r) => n + r.ops / r.opsPerSec, 0);
    out[o.name] = { ...medianStats(list), ops: opsPerBlock * blocks, opsPerSec: (opsPerBlock * blocks) / seconds };
  }
  return out;
}

/** The median of each field over repeated runs of the same measurement. */
export function medianStats(runs: readonly RunStats[]): RunStats {
  const first = runs[0];
  if (first === undefined) throw new Error('no runs');
  return {
    ops: first.ops,
    concurrency: first.concurrency,
    p50Us: median(runs.map((r) => r.p50Us)),
    p99Us: median(runs.map((r) => r.p99Us)),
    meanUs: median(runs.map((r) => r.meanUs)),
    opsPerSec: median(runs.map((r) => r.opsPerSec)),
    // Each quantile the median over the runs: the distribution of a typical run.
    quantilesUs: first.quantilesUs?.length
      ? first.quantilesUs.map((_, q) => median(runs.map((r) => r.quantilesUs?.[q] ?? Number.NaN)))
      : undefined,
  };
}

/** A small deterministic PRNG (the consistency runs' mulberry32), so workloads are the same from run to run. */
export { rng as prng } from '../consistency/rng.ts';

/** Fisher–Yates shuffle in place with the given random source. */
export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/**
 * Zipf(s) over ranks 0 … n-1 (rank 0 the most popular): P(rank k) ∝ 1 / (k + 1)^s. Sampled by
 * binary search in the cumulative distribution.
 */
export function zipfSampler(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let k = 0; k < n; k++) {
    acc += 1 / (k + 1) ** s;
    cdf[k] = acc;
  }
  for (let k = 0; k < n; k++) cdf[k] = (cdf[k] as number) / acc;
  return () => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
