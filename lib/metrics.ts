/**
 * What the library counts, without depending on a metrics library: the handlers in functions/ read
 * these counts once per invocation and publish them (functions/metrics.ts binds them to Powertools
 * Metrics, as CloudWatch embedded metric format). Counting is a map increment: nothing is sent, no
 * clock is read, and a library used outside Lambda may ignore it.
 */

/** Units as CloudWatch names them (and Powertools' MetricUnit spells them). */
export type MetricUnitName = 'Count' | 'Milliseconds' | 'Seconds';

/**
 * Every metric the library and its handlers emit, with its unit and how values of one invocation
 * combine: `sum` (counters) or `max` (levels seen: nodes not up, dirty keys, the stream's age).
 * infra/monitoring.yml names only these (test/integration/metrics.test.ts holds the two together).
 */
export const METRICS = {
  /** Reads served by the cache (per key: a batch-get counts each). */
  ReadHit: { unit: 'Count', combine: 'sum' },
  /** Reads served from DynamoDB through the cache (lease, consistent read, fill). */
  ReadMiss: { unit: 'Count', combine: 'sum' },
  /** Reads served around the cache: node down or slow, cache off, an unreadable entry. */
  ReadBypass: { unit: 'Count', combine: 'sum' },
  /** Misses that waited for another reader's fill instead of reading DynamoDB too (G5). */
  LeaseWaits: { unit: 'Count', combine: 'sum' },
  /** Consistent DynamoDB reads made under a fill lease that answered (one per filled key: G5 says one per hot-key miss). */
  FillReads: { unit: 'Count', combine: 'sum' },
  /** Writes whose item was stored in the cache (write-through). */
  WriteStored: { unit: 'Count', combine: 'sum' },
  /** Writes that left the entry dropped (another writer, an invalidation, a failed or uncertain write). */
  WriteInvalidated: { unit: 'Count', combine: 'sum' },
  /** Writes refused by CACHE_WRITE_POLICY=strict (503): their node could not be invalidated. */
  WriteRefused: { unit: 'Count', combine: 'sum' },
  /** Node state machine transitions (up, down, starting), as this container saw them. */
  NodeStatusChanges: { unit: 'Count', combine: 'sum' },
  /** Nodes this container does not trust for reads (down or starting), at the end of the invocation. */
  NodesNotUp: { unit: 'Count', combine: 'max' },
  /** Invalidations this container owes its nodes (dirty keys, R6), at the end of the invocation. */
  DirtyKeys: { unit: 'Count', combine: 'max' },
  /** Stream records the consumer was handed. */
  StreamRecords: { unit: 'Count', combine: 'sum' },
  /** Stream records whose entry was invalidated. */
  StreamInvalidations: { unit: 'Count', combine: 'sum' },
  /** Stream records whose change the entry already held (a new image with its version and digest, issue 13): left alone. */
  StreamRecordsKept: { unit: 'Count', combine: 'sum' },
  /** Stream records left alone: another table, a malformed key (they can never apply). */
  StreamRecordsSkipped: { unit: 'Count', combine: 'sum' },
  /** Stream records parked because their node could not be reached. */
  StreamRecordsParked: { unit: 'Count', combine: 'sum' },
  /** Stream records neither applied nor parked: Lambda retries them. */
  StreamRecordsFailed: { unit: 'Count', combine: 'sum' },
  /** Age of the oldest record of a batch when the consumer got it (ApproximateCreationDateTime: whole seconds). */
  StreamAge: { unit: 'Seconds', combine: 'max' },
  /** Parked invalidations the replayer applied at once. */
  ParkedReplayed: { unit: 'Count', combine: 'sum' },
  /** Parked invalidations the replayer could not apply: left for the sweep. */
  ParkedLeftForSweep: { unit: 'Count', combine: 'sum' },
  /** Parked invalidations the sweep applied. */
  SweepApplied: { unit: 'Count', combine: 'sum' },
  /** Parked invalidations the sweep tried and pushed back (node still away). */
  SweepDeferred: { unit: 'Count', combine: 'sum' },
  /** Parked items the sweep could not work on (DynamoDB failing): left for its next run. */
  SweepFailed: { unit: 'Count', combine: 'sum' },
  /** Parked invalidations still in the table after a sweep: the backlog. */
  ParkedBacklog: { unit: 'Count', combine: 'max' },
  /** Sampled stream records the consistency inspector checked against the cache (lib/stream/inspector.ts). */
  InspectorChecks: { unit: 'Count', combine: 'sum' },
  /** Entries older than a stream record, still present after it was applied, that disagree with DynamoDB. */
  Inconsistencies: { unit: 'Count', combine: 'sum' },
  /** An HTTP request's time in the handler, per route (its own dimension: functions/metrics.ts). */
  Latency: { unit: 'Milliseconds', combine: 'max' },
} as const satisfies Record<string, { unit: MetricUnitName; combine: 'sum' | 'max' }>;

export type MetricName = keyof typeof METRICS;

/** One metric's value for the invocation, ready to publish. */
export interface MetricValue {
  name: MetricName;
  unit: MetricUnitName;
  value: number;
}

/**
 * The counts of one container since they were last taken. Lives in the module-scope ItemCache
 * (`cache.metrics`), like node health; the handler takes them at the end of each invocation.
 */
export class CacheMetrics {
  private readonly values = new Map<MetricName, number>();

  /** Adds `n` to a counter. */
  count(name: MetricName, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n);
  }

  /** Records a level: the invocation reports the largest seen. */
  level(name: MetricName, value: number): void {
    const seen = this.values.get(name);
    if (seen === undefined || value > seen) this.values.set(name, value);
  }

  /** What was counted since the last take, in METRICS order; the counts start again from zero. */
  take(): MetricValue[] {
    const out: MetricValue[] = [];
    for (const name of Object.keys(METRICS) as MetricName[]) {
      const value = this.values.get(name);
      if (value !== undefined) out.push({ name, unit: METRICS[name].unit, value });
    }
    this.values.clear();
    return out;
  }
}

/**
 * Age of the oldest record of a stream batch, in seconds, from DynamoDB Streams'
 * ApproximateCreationDateTime (epoch seconds in Lambda's event, a Date in the SDK's shape);
 * undefined when no record carries one.
 */
export function streamAgeSeconds(
  records: readonly { dynamodb?: { ApproximateCreationDateTime?: unknown } }[],
  now = Date.now(),
): number | undefined {
  let oldest: number | undefined;
  for (const r of records) {
    const t = r.dynamodb?.ApproximateCreationDateTime;
    const ms = t instanceof Date ? t.getTime() : typeof t === 'number' ? t * 1000 : undefined;
    if (ms !== undefined && Number.isFinite(ms) && (oldest === undefined || ms < oldest)) oldest = ms;
  }
  return oldest === undefined ? undefined : Math.max(0, Math.round((now - oldest) / 1000));
}
