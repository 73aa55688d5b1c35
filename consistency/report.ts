import type { Distribution } from './checker.ts';
import type { RunResult } from './harness.ts';
import { FAULT_DESCRIPTIONS, type FaultKind } from './history.ts';

const dist = (d: Distribution): string => (d.count === 0 ? '–' : `p50 ${d.p50}  p99 ${d.p99}  max ${d.max}  (n=${d.count})`);

function table(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

/**
 * Per fault class: windows, and the stale reads, failed requests and strict refusals the checker
 * attributed to it (a stale read or failure near two classes counts in both; a remap is blamed for
 * stale reads at any time after it, as a map change serves old entries until their TTL).
 */
export function formatByFault(r: Pick<RunResult, 'byFault'>): string {
  const rows = [
    `by fault class: ${'fault'.padEnd(10)} ${'windows'.padStart(7)} ${'stale'.padStart(6)} ${'failed'.padStart(6)} ${'refusals excused'.padStart(16)} ${'refusals after answer'.padStart(21)} ${'DynamoDB errors'.padStart(15)}`,
  ];
  for (const [kind, c] of Object.entries(r.byFault)) {
    if (!c) continue;
    rows.push(
      `                ${(kind === 'none' ? 'no fault' : kind).padEnd(10)} ${String(c.windows).padStart(7)} ${String(c.staleReads).padStart(6)} ${String(c.failedRequests).padStart(6)} ${String(c.refusalsExcused).padStart(16)} ${String(c.refusalsAfterAnswer).padStart(21)} ${String(c.dynamoFaultErrors).padStart(15)}`,
    );
  }
  return rows.join('\n');
}

/** The run as a table for stdout. */
export function formatReport(r: RunResult): string {
  const out: string[] = [];
  const o = r.options;
  out.push(
    `Consistency run: ${r.durationSeconds} s, ${o.mode ?? 'shards'} mode, policy ${o.policy}, seed ${o.seed}, ${o.workers} containers × ${o.concurrency}, command timeout ${o.commandTimeoutMs} ms, check interval ${o.checkIntervalSeconds} s, stream poll ${o.streamPollMs} ms`,
  );
  out.push(
    `Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGb} GB, node ${r.machine.node}, redis ${r.machine.redis}; ${r.startedAt}`,
  );
  out.push(
    `Library: ${r.revision.commit.slice(0, 12)}${r.revision.libChanges.length ? ` + uncommitted changes in ${r.revision.libChanges.length} lib/ file(s)` : ''}`,
  );
  out.push('');
  out.push(
    table([
      [
        'operations',
        `${r.operations.total} (${Object.entries(r.operations.byKind)
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')})`,
      ],
      ['reads checked', `${r.reads.checked} (hit ${r.reads.hits}, miss ${r.reads.misses}, bypass ${r.reads.bypasses})`],
      [
        'writes',
        `acknowledged ${r.writes.acknowledged}, not committed ${r.writes.notCommitted}, committed unacknowledged ${r.writes.committedUnacknowledged}, uncertain ${r.writes.uncertain}; begin-write unreachable ${r.writes.degraded}, end-write lost ${r.writes.endLost}`,
      ],
      ['(a) stale reads', String(r.staleReads)],
      ['(b) phantom reads', String(r.phantomReads)],
      ['(c) failed requests', `${r.failedRequests}${r.failedRequests ? ` ${JSON.stringify(r.failedByReason)}` : ''}`],
      [
        '    strict refusals excused (node not yet answering)',
        `${r.refusedWrites}${r.refusalsAtCutAddress ? ` (${r.refusalsAtCutAddress} in containers a partition did not cut, by the address it cut)` : ''}`,
      ],
      ['    strict refusals counted failed', String(r.refusalsCountedFailed)],
      ['    strict refusals while their container stood still', String(r.refusalsStarved)],
      ['    strict refusals, no replica acknowledged (documented)', String(r.refusalsUnreplicated)],
      ['    errors while DynamoDB failed', String(r.dynamoFaultErrors)],
      [
        '    stale within R6 bound (available)',
        `${r.boundedStaleReads.count}${r.boundedStaleReads.count ? `, age ${dist(r.boundedStaleReads.ageMs)} ms, beyond bound ${r.boundedStaleReads.beyondBound}` : ''}`,
      ],
      [
        'node silences, no fault (watch, ≥ ½ command timeout)',
        `${r.nodeSilences.count}${r.nodeSilences.count ? `, longest ${r.nodeSilences.longestMs} ms, ${JSON.stringify(r.nodeSilences.byNode)}` : ''}`,
      ],
      [
        'commands of ≥ 50 ms on the nodes (SLOWLOG)',
        `${r.slowCommands.length}${r.slowCommands.length ? ` ${JSON.stringify(countBy(r.slowCommands.map((c) => c.command)))}` : ''}`,
      ],
      [
        '(d) out-of-band lag ms',
        `${dist(r.outOfBandLagMs)}; superseded ${r.outOfBandLagMs.superseded}, unseen ${r.outOfBandLagMs.timeouts}`,
      ],
      ['    no fault around', dist(r.outOfBandLagHealthyMs)],
      ['    during cache faults', dist(r.outOfBandLagDuringCacheFaultsMs)],
      ['    during stream pauses (excluded)', dist(r.outOfBandLagDuringStreamPauseMs)],
      [
        '    reads older than an OOB write',
        `${r.outOfBandStaleReads.count}${r.outOfBandStaleReads.count ? `, age ${dist(r.outOfBandStaleReads.ageMs)} ms` : ''}`,
      ],
      [
        '(f) hot-key DynamoDB reads',
        `${r.hotKeys.dynamoReads} for ${r.hotKeys.invalidations} invalidations (${r.hotKeys.readsPerInvalidation}/invalidation, ${r.hotKeys.readsPerWrite}/write); outside faults ${r.hotKeys.readsPerInvalidationOutsideFaults}/invalidation`,
      ],
      [
        'stream consumer',
        `${r.stream.records} records in ${r.stream.batches} batches, ${r.stream.retries} retries; ${r.stream.replayed} parked invalidations replayed, ${r.stream.replayRetries} replay retries`,
      ],
      ['consistency inspector', `${r.inspector.checked} samples checked, ${r.inspector.inconsistencies.length} inconsistencies`],
      [
        'event-loop delay max ms',
        Object.entries(r.eventLoopDelayMs)
          .map(([k, v]) => `${k} ${v.max}`)
          .join(', '),
      ],
    ]),
  );
  out.push('');
  out.push(
    `(e) latency by fault window (ms; budget: command timeout ${o.commandTimeoutMs} + the operation's DynamoDB time + 100 slack; a reader that waited on another's fill is also credited that filler's one DynamoDB read: "waited")`,
  );
  const rows: string[] = [];
  rows.push(
    `  ${'fault'.padEnd(10)} ${'n'.padStart(3)} ${'ops'.padStart(7)} ${'p50'.padStart(7)} ${'p99'.padStart(7)} ${'max'.padStart(7)} ${'cache max'.padStart(9)} ${'over'.padStart(5)} ${'waited'.padStart(6)}  worst`,
  );
  for (const [kind, l] of Object.entries(r.faultLatencyMs)) {
    if (!l) continue;
    const label = kind === 'none' ? 'no fault' : kind;
    const worst = l.worst
      ? `${l.worst.client} ${l.worst.kind} ${l.worst.key} ${l.worst.latencyMs} ms (DynamoDB ${l.worst.dynamoMs}, waited ${l.worst.waitedMs}, ${l.worst.source ?? '-'})`
      : '';
    rows.push(
      `  ${label.padEnd(10)} ${String(r.faults[kind as FaultKind] ?? '-').padStart(3)} ${String(l.operations).padStart(7)} ${String(l.p50).padStart(7)} ${String(l.p99).padStart(7)} ${String(l.max).padStart(7)} ${String(l.maxCacheMs).padStart(9)} ${String(l.overBudget).padStart(5)} ${String(l.waitedOnFill).padStart(6)}  ${worst}`,
    );
  }
  out.push(rows.join('\n'));
  out.push('');
  out.push(formatByFault(r));
  out.push('');
  out.push('faults injected:');
  for (const [kind, n] of Object.entries(r.faults)) out.push(`  ${kind.padEnd(10)} ×${n}  ${FAULT_DESCRIPTIONS[kind as FaultKind]}`);
  for (const [label, list] of [
    ['stale reads', r.staleExamples],
    ['phantom reads', r.phantomExamples],
    ['failed requests', r.failedExamples],
  ] as const) {
    if (list.length === 0) continue;
    out.push('');
    out.push(`${label} (first ${Math.min(list.length, 5)}):`);
    for (const e of list.slice(0, 5)) out.push(`  ${JSON.stringify(e)}`);
  }
  out.push('');
  out.push(
    r.verdict.ok
      ? `OK: the ${r.verdict.policy} policy's claims held`
      : `VIOLATED (${r.verdict.policy}): ${r.verdict.violations.join('; ')}`,
  );
  return out.join('\n');
}

/** How many times each value occurs. */
function countBy(values: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of values) out[v] = (out[v] ?? 0) + 1;
  return out;
}
