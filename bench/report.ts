/** The named figures, their targets, and the markdown the bench prints. */
import type { RunStats } from './stats.ts';
import type { ColdResult } from './coldstart.ts';
import type { StormResult } from './storm.ts';
import type { ZipfResult } from './zipf.ts';
import type { HostileResult } from './hostile.ts';
import type { WritesResult } from './writes.ts';

export interface Target {
  op: '<=' | '>=';
  value: number;
  what: string;
}

/** The issue's figures (ratios from the same run) and their targets. */
export const TARGETS: Record<string, Target> = {
  hitVsRawP50: { op: '<=', value: 1.25, what: 'library hit p50 / raw Redis HGET p50 (c1)' },
  throughputVsRaw: { op: '>=', value: 0.8, what: 'library hit throughput / raw HGET throughput (c64)' },
  clusterHitVsRawP50: {
    op: '<=',
    value: 1.25,
    what: 'cluster mode: library hit p50 / raw Redis Cluster HGET p50 (c1, 3 primaries; the target is hitVsRawP50’s)',
  },
  clusterThroughputVsRaw: {
    op: '>=',
    value: 0.8,
    what: 'cluster mode: library hit throughput / raw Redis Cluster HGET throughput (c64; the target is throughputVsRaw’s)',
  },
  hitSpeedupVsDynamo: { op: '>=', value: 6, what: 'DynamoDB Local GetItem p50 / library hit p50 (c1, alternating loops)' },
  stormDynamoReads: { op: '<=', value: 2, what: 'DynamoDB reads for 500 concurrent gets of a just-invalidated key' },
  zipfHitRatio: {
    op: '>=',
    value: 0.9,
    what: 'hit ratio, Zipf(1) workload, 95 % reads / 5 % writes, the Streams consumer running',
  },
  zipfHitRatioVsIdeal: {
    op: '>=',
    value: 0.98,
    what: 'that hit ratio / an ideal write-through cache’s on the same trace (first read of each key misses, nothing else)',
  },
  dynamoReadsPerOwnWrite: {
    op: '<=',
    value: 0.05,
    what: 'DynamoDB reads per library write, write-then-read loop, the consumer running and caught up',
  },
  putVsDynamoP50: { op: '<=', value: 1.25, what: 'library put p50 / raw PutItem p50 (c1, side by side)' },
  largestBundleKiB: { op: '<=', value: 300, what: 'largest function zip' },
  initMs: { op: '<=', value: 200, what: 'largest median module init of a bundle (import + clients)' },
  worstBodyVsJsonParse: {
    op: '<=',
    value: 10,
    what: "handler answering the worst body of each kind (up to the body size limit), beyond DynamoDB's own time for the same calls / JSON.parse of the same bytes, worst kind",
  },
};

export const NAMED_FIGURES = Object.keys(TARGETS);

export function meets(name: string, value: number): boolean | undefined {
  const t = TARGETS[name];
  if (t === undefined || !Number.isFinite(value)) return undefined;
  return t.op === '<=' ? value <= t.value : value >= t.value;
}

function fmt(v: number | undefined, digits = 2): string {
  if (v === undefined || !Number.isFinite(v)) return 'n/a';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return v.toFixed(digits);
}

function us(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '–' : v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${Math.round(v)} µs`;
}

function rate(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '–' : Math.round(v).toLocaleString('en-US');
}

const OPERATIONS: [string, string][] = [
  ['raw.hget', 'raw ioredis `HGET key d` (floor)'],
  ['raw.hget-parse', 'raw `HGET key d` + `JSON.parse`'],
  ['raw.hget-defaults', 'ioredis with its defaults (not auto-pipelined) `HGET key d`'],
  ['library.read', "library's hit-path read alone (`CacheNode.read`, no decoding)"],
  ['library.get-hit', 'library get, hit'],
  ['handler.get-hit', 'GET handler (in-process), hit'],
  ['library.get-miss', 'library get, miss + fill'],
  ['library.put', 'library put'],
  ['library.update', 'library update'],
  ['library.delete', 'library delete'],
  ['library.batch-get-100', 'library batchGet, 100 keys (hits, 3 nodes)'],
  ['cluster.raw.hget', 'raw ioredis `Cluster` `HGET key d`, 3 primaries (cluster floor)'],
  ['cluster.library.get-hit', 'library get, hit, cluster mode (3 primaries)'],
  ['dynamo.getitem', 'DynamoDB Local GetItem (consistent)'],
  ['dynamo.batchgetitem-100', 'DynamoDB Local BatchGetItem, 100 keys (consistent)'],
];

export function markdown(input: {
  figures: Record<string, number>;
  stats: Record<string, RunStats>;
  storm: StormResult | undefined;
  zipf: ZipfResult | undefined;
  cold: ColdResult | undefined;
  hostile: HostileResult | undefined;
  writes?: WritesResult | undefined;
  header: string;
  warnings: string[];
}): string {
  const { figures, stats, storm, zipf, cold } = input;
  const lines: string[] = [input.header, ''];
  lines.push('| figure | measured | target | |', '|---|---:|---:|---|');
  for (const [name, t] of Object.entries(TARGETS)) {
    const v = figures[name];
    const ok = v === undefined ? undefined : meets(name, v);
    lines.push(
      `| \`${name}\` — ${t.what} | ${fmt(v)} | ${t.op === '<=' ? '≤' : '≥'} ${t.value} | ${ok === undefined ? 'not measured' : ok ? 'met' : '**missed**'} |`,
    );
  }
  if (Object.keys(stats).length > 0) {
    lines.push('', '| operation | c1 p50 | c1 p99 | c1 ops/s | c64 p50 | c64 p99 | c64 ops/s |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const [key, label] of OPERATIONS) {
      const a = stats[`${key}.c1`];
      const b = stats[`${key}.c64`];
      if (!a && !b) continue;
      lines.push(
        `| ${label} | ${us(a?.p50Us)} | ${us(a?.p99Us)} | ${rate(a?.opsPerSec)} | ${us(b?.p50Us)} | ${us(b?.p99Us)} | ${rate(b?.opsPerSec)} |`,
      );
    }
    const extra = [
      ['hitVsRawP99', 'library hit p99 / raw p99 (c1)'],
      ['hitVsRawParsedP50', 'library hit p50 / (raw HGET + JSON.parse) p50 (c1)'],
      ['throughputVsRawParsed', 'library hit throughput / (raw HGET + JSON.parse) throughput (c64)'],
      [
        'throughputVsRawDefaults',
        'library hit throughput / HGET throughput of an ioredis client with its defaults, not auto-pipelined (c64)',
      ],
      ['throughputVsOwnRead', "library hit throughput / the library's hit-path read alone, no decoding (c64)"],
      ['clusterHitVsRawP99', 'cluster mode: library hit p99 / raw Cluster HGET p99 (c1)'],
      ['hitSpeedupVsDynamoInterleaved', 'GetItem p50 / library hit p50, GetItems sampled one in n between hits'],
      ['handlerVsLibraryP50', 'handler hit p50 / library hit p50'],
      ['batchSpeedupVsDynamo', 'BatchGetItem p50 / library batchGet p50 (100 keys)'],
    ] as const;
    lines.push('', '| other ratio | measured |', '|---|---:|');
    for (const [k, label] of extra) lines.push(`| \`${k}\` — ${label} | ${fmt(figures[k])} |`);
  }
  if (storm) {
    lines.push(
      '',
      `Hot-key storm: DynamoDB reads per round ${storm.reads.join(', ')} (median ${fmt(storm.median, 1)}, max ${storm.max}); answers ${Object.entries(
        storm.sources,
      )
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}; wrong answers ${storm.wrongAnswers}.`,
    );
  }
  if (zipf) {
    lines.push(
      '',
      `Zipf (the Streams consumer running, ${zipf.consumerRecords} records): hit ratio ${fmt(zipf.hitRatio, 4)} (overall ${fmt(zipf.hitRatioOverall, 4)}; ideal write-through ${fmt(zipf.idealHitRatio, 4)}, ratio ${fmt(zipf.hitRatioVsIdeal, 4)}); DynamoDB read units with the cache ${fmt(zipf.readUnitsWith, 0)} vs without ${fmt(zipf.readUnitsWithout, 0)} (ratio ${fmt(zipf.readUnitsRatio, 4)}); ${rate(zipf.opsPerSec)} ops/s at c64; hottest key ${(zipf.hottestKeyShare * 100).toFixed(1)} % of operations.`,
    );
  }
  if (input.writes) {
    const w = input.writes;
    lines.push(
      '',
      `Writes (the Streams consumer running, ${w.consumerRecords} records handled): DynamoDB reads per library write ${fmt(w.dynamoReadsPerOwnWrite, 3)} ` +
        `(reads right after the write ${JSON.stringify(w.sources.afterWrite)}, after the consumer caught up ${JSON.stringify(w.sources.afterCatchUp)}); ` +
        `a put of an item with nested numbers ${fmt(w.dynamoReadsPerOwnWriteNested, 3)} (its read-back). ` +
        `p50 vs raw DynamoDB (c1): put ${fmt(w.putVsDynamoP50)} (vs a conditional PutItem ${fmt(w.putVsConditionalPutP50)}); the write protocol's floor, its two scripts around the library's conditional PutItem and no library code, ${fmt(w.putFloorVsDynamoP50)} (the end not waited for ${fmt(w.putOneTripFloorVsDynamoP50)}), so the library's put is ${fmt(w.putVsFloorP50)} times that floor; update ${fmt(w.updateVsDynamoP50)}, delete ${fmt(w.deleteVsDynamoP50)}. ` +
        `Redis round trips per write: put ${fmt(w.redisRoundTripsPerWrite.put)}, update ${fmt(w.redisRoundTripsPerWrite.update)}, delete ${fmt(w.redisRoundTripsPerWrite.delete)}; ` +
        `one round trip (raw PING, sampled beside the puts) ${us(w.redisRoundTripP50Us)} at p50.`,
      '',
      '| write (c1, side by side) | library p50 | raw p50 | library p99 | raw p99 |',
      '|---|---:|---:|---:|---:|',
    );
    for (const [kind, raw] of [
      ['put', 'putitem'],
      ['put', 'putitem-conditional'],
      ['update', 'updateitem'],
      ['delete', 'deleteitem'],
    ] as const) {
      const l = w.stats[`library.${kind}.c1`];
      const r = w.stats[`dynamo.${raw}.c1`];
      lines.push(
        `| ${kind}${raw.endsWith('conditional') ? ' (raw: conditional)' : ''} | ${us(l?.p50Us)} | ${us(r?.p50Us)} | ${us(l?.p99Us)} | ${us(r?.p99Us)} |`,
      );
    }
    // The protocol's floor in the library's column: what the scripts and the PutItem cost alone.
    const raw = w.stats['dynamo.putitem.c1'];
    for (const [name, label] of [
      ['floor', "put's floor (the two scripts and the conditional PutItem, no library code)"],
      ['floor-one-trip', "put's floor, the end not waited for"],
    ] as const) {
      const f = w.stats[`${name}.put.c1`];
      lines.push(`| ${label} | ${us(f?.p50Us)} | ${us(raw?.p50Us)} | ${us(f?.p99Us)} | ${us(raw?.p99Us)} |`);
    }
  }
  if (cold) {
    lines.push(
      '',
      `Cold start (${cold.source}${cold.note ? `: ${cold.note}` : ''}):`,
      '',
      '| bundle | zip | init median | since process start |',
      '|---|---:|---:|---:|',
    );
    for (const b of [...cold.bundles, ...(cold.bare ? [cold.bare] : [])]) {
      lines.push(`| ${b.name} | ${b.kib.toFixed(1)} KiB | ${b.initMedianMs.toFixed(1)} ms | ${b.sinceStartMedianMs.toFixed(1)} ms |`);
    }
  }
  if (input.hostile) {
    lines.push(
      '',
      `Worst wall ratio with DynamoDB's own time \`worstBodyWallVsJsonParse\` ${fmt(figures.worstBodyWallVsJsonParse)}; worst CPU ratio \`worstBodyCpuVsJsonParse\` ${fmt(figures.worstBodyCpuVsJsonParse)}; worst CPU growth for 4× the bytes \`worstBodyCpuGrowth\` ×${fmt(figures.worstBodyCpuGrowth, 1)} (linear ≈ 4, quadratic ≈ 16).`,
    );
    lines.push(
      '',
      `Worst bodies (up to ${input.hostile.maxBodyBytes} bytes, HTTP_MAX_BODY_BYTES), the handler in process / JSON.parse of the same bytes:`,
      '',
      "| body | request | bytes | answer | handler | DynamoDB's own | its CPU | JSON.parse | ratio | wall ratio | CPU ratio | CPU for 4× the bytes |",
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const [kind, k] of Object.entries(input.hostile.kinds)) {
      lines.push(
        `| ${kind} | ${k.method} ${k.path} | ${k.bodyBytes} | ${k.status} | ${k.handlerMs.toFixed(2)} ms | ${k.dynamoMs.toFixed(2)} ms | ${k.handlerCpuMs.toFixed(2)} ms | ${k.jsonParseMs.toFixed(2)} ms | ${fmt(k.ratio)} | ${fmt(k.wallRatio)} | ${fmt(k.cpuRatio)} | ×${fmt(k.cpuGrowth, 1)} |`,
      );
    }
  }
  if (input.warnings.length > 0) lines.push('', 'Warnings:', ...input.warnings.map((w) => `- ${w}`));
  return lines.join('\n');
}
