/**
 * One consistency run: services started, client containers (worker threads) loaded, an out-of-band
 * writer and probe, the Streams consumer, the nemesis on a schedule; then the history is checked.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { dynamoClientFor } from '../lib/store.ts';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { execFileSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { DeleteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { localDynamoClientConfig } from '../infra/local/dynamodb-local.ts';
import { StreamFeed } from '../infra/local/stream-feed.ts';
import { createReplayHandler } from '../functions/replay.ts';
import { createSweepHandler } from '../functions/sweep.ts';
import {
  ConsistencyInspector,
  ItemCache,
  invalidateStreamRecords,
  loadConfig,
  logger,
  type Config,
  type Inconsistency,
} from '../lib/index.ts';
import { VIRTUAL_SHARDS } from '../lib/config.ts';
import { check, type CheckResult, type Policy } from './checker.ts';
import { faultDuration, Nemesis, type RemapOutcome } from './faults.ts';
import {
  ABSENT,
  ALL_FAULTS,
  newCallAccount,
  OVERLAY_FAULTS,
  recordCall,
  waitFields,
  type CallAccount,
  type DynamoFaultMode,
  type FaultKind,
  type FaultWindow,
  type OobSample,
  type OpRecord,
} from './history.ts';
import { defaultKeySpace, keySpace, readIdsOf, type KeyRef, type KeySpaceOptions } from './keys.ts';
import { between, now, pick, rng, shuffled, sleep, type Rng } from './rng.ts';
import { Stack, TABLES, type SlowCommand } from './stack.ts';
import type { FromWorker, ToWorker, WorkerConfig } from './worker.ts';

export interface RunOptions {
  seconds: number;
  faults: FaultKind[];
  seed: number;
  policy: Policy;
  /** Client containers (worker threads). */
  workers: number;
  /** Concurrent operation loops per container. */
  concurrency: number;
  /** The `remap` fault: containers started on the other map, and again on the first map after it. */
  remapContainers: number;
  /**
   * How the `remap` fault changes the map. `canary`: both maps live for the window (a canary or
   * linear deploy), then a rollback. `procedure`: README's "Changing the shard map" — the new map
   * deployed all at once (every container on the first map stops taking requests once those it
   * holds are done), every node emptied (FLUSHALL ASYNC); at the rollback the same, and the first
   * map's containers take requests again.
   */
  remapMode: 'canary' | 'procedure';
  thinkMs: [number, number];
  commandTimeoutMs: number;
  /**
   * CACHE_CHECK_INTERVAL_SECONDS of every container: the library's default (60 s) unless a run asks
   * for a short one (1 s lets a down node come back within the fault's slot).
   */
  checkIntervalSeconds: number;
  /**
   * DYNAMODB_TIMEOUT_MS and DYNAMODB_DEADLINE_MS of every container. DynamoDB Local is a JVM sharing
   * a small machine with the whole run: like the test stacks (test/helpers/stack.ts), the run gives
   * it 3 s per attempt and 6 s in all, not the 1 s / 3 s meant for DynamoDB, since a library that
   * enforces them would otherwise fail requests the JVM was merely slow to answer.
   */
  dynamoTimeoutMs: number;
  dynamoDeadlineMs: number;
  /** How often the Streams consumer polls an idle shard (Lambda: about 4 times a second). */
  streamPollMs: number;
  /** Plain shards (one more shard, with a replica, is added for failovers); shards mode only. */
  shards: number;
  /**
   * `shards` (the default): CACHE_MODE=shards on the shards above. `cluster`: CACHE_MODE=cluster on a
   * local Redis Cluster of three primaries with one replica each (stack.ts), with CLUSTER_FAULTS.
   */
  mode: 'shards' | 'cluster';
  keys: KeySpaceOptions;
  hotShare: number;
  /** Use this DynamoDB (e.g. the test runner's); default: DYNAMODB_ENDPOINT, else start DynamoDB Local. */
  dynamoEndpoint?: string;
  /** Write every record and fault window here (NDJSON), for analysis. */
  historyFile?: string;
  log: (line: string) => void;
}

export const defaultRunOptions: RunOptions = {
  seconds: 60,
  faults: [...ALL_FAULTS],
  seed: 1,
  policy: 'strict',
  workers: 4,
  concurrency: 3,
  remapContainers: 2,
  remapMode: 'canary',
  thinkMs: [2, 12],
  commandTimeoutMs: 300,
  checkIntervalSeconds: 60,
  dynamoTimeoutMs: 3000,
  dynamoDeadlineMs: 6000,
  streamPollMs: 250,
  shards: 3,
  mode: 'shards',
  keys: defaultKeySpace,
  hotShare: 0.5,
  log: (line) => console.error(line),
};

export interface RunResult extends CheckResult {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: { cpus: number; cpuModel: string; memoryGb: number; node: string; redis: string; platform: string; loadAverage: number[] };
  /** The library measured: the commit, and the files under lib/ changed since it. */
  revision: { commit: string; libChanges: string[] };
  options: Omit<RunOptions, 'log' | 'dynamoEndpoint' | 'historyFile'> & { settings: Record<string, string> };
  faults: Partial<Record<FaultKind, number>>;
  /** Shards mode: every command of SLOW_COMMAND_MS or more the nodes logged (stack.ts slowCommands). */
  slowCommands: SlowCommand[];
  faultLog: (FaultWindow & { relStartMs: number; durationMs: number })[];
  /** Feed totals (every subscription); replayed: parked invalidations applied; replayRetries: replayer batches retried. */
  stream: { batches: number; records: number; retries: number; hotInvalidations: number; replayed: number; replayRetries: number };
  /**
   * The live consistency inspector on the consumer (lib/stream/inspector.ts), sampling every applied
   * record and checking it 2 s later: samples checked, and what it found (none, in a clean run).
   */
  inspector: { checked: number; inconsistencies: Inconsistency[] };
  /** What each container's nodes looked like at the end. */
  endHealth: Record<string, { status: string; dirtyKeys: number }[]>;
  /**
   * Event-loop delay of each thread (ms): a container's own stalls (its Redis commands can time out
   * because of them), the harness's (stream consumer, probe) and the network thread's (proxies).
   */
  eventLoopDelayMs: Record<string, { p99: number; max: number }>;
  /** The claims this policy makes, and whether the run kept them. */
  verdict: { ok: boolean; policy: Policy; violations: string[] };
}

/** The settings every container runs with. */
export function settings(o: RunOptions): Record<string, string> {
  return {
    CACHE_COMMAND_TIMEOUT_MS: String(o.commandTimeoutMs),
    CACHE_CONNECT_TIMEOUT_MS: '1000',
    CACHE_CHECK_INTERVAL_SECONDS: String(o.checkIntervalSeconds),
    CACHE_START_CYCLES: '1',
    CACHE_WRITE_POLICY: o.policy,
    CACHE_LEASE_MS: '2000',
    DYNAMODB_TIMEOUT_MS: String(o.dynamoTimeoutMs),
    DYNAMODB_DEADLINE_MS: String(o.dynamoDeadlineMs),
    DYNAMODB_MAX_ATTEMPTS: '3',
  };
}

class ContainerThread {
  eventLoopDelayMs = { p99: 0, max: 0 };
  private readonly pending = new Set<{ type: FromWorker['type']; resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  private failure: string | undefined;
  health: { status: string; dirtyKeys: number }[] = [];
  /** Resolves when the container is warm (every node connected and verified). */
  readonly ready: Promise<FromWorker>;

  constructor(
    readonly name: string,
    private readonly worker: Worker,
  ) {
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'closed') {
        this.health = m.health.map((h) => ({ status: h.status, dirtyKeys: h.dirtyKeys }));
        this.eventLoopDelayMs = m.eventLoopDelayMs;
      }
      if (m.type === 'failed') this.fail(m.message);
      for (const p of [...this.pending]) {
        if (p.type !== m.type) continue;
        this.pending.delete(p);
        p.resolve(m);
      }
    });
    worker.on('error', (err) => this.fail(err.stack ?? err.message));
    worker.on('exit', (code) => this.fail(`exited with code ${code}`));
    this.ready = this.next('ready');
  }

  private fail(message: string): void {
    this.failure ??= message;
    for (const p of this.pending) p.reject(new Error(`${this.name}: ${message}`));
    this.pending.clear();
  }

  /** Resolves at the container's next message of `type`. */
  next(type: FromWorker['type'], timeoutMs = 120_000): Promise<FromWorker> {
    if (this.failure !== undefined) return Promise.reject(new Error(`${this.name}: ${this.failure}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(entry);
        reject(new Error(`${this.name}: no '${type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      const entry = {
        type,
        resolve: (m: FromWorker) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.pending.add(entry);
    });
  }

  request(m: ToWorker, reply: FromWorker['type']): Promise<FromWorker> {
    const p = this.next(reply);
    this.worker.postMessage(m);
    return p;
  }

  send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  async terminate(): Promise<void> {
    this.failure ??= 'terminated';
    await this.worker.terminate();
  }
}

/** A DynamoDB client that times its calls and their item reads (for the main thread's probe container). */
function timedClient(config: Config, als: AsyncLocalStorage<CallAccount>): DynamoDBClient {
  const client = dynamoClientFor(config.store);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const t0 = now();
      try {
        return await next(args);
      } finally {
        const ctx = als.getStore();
        if (ctx) recordCall(ctx, readIdsOf(context.commandName ?? '', (args as { input: unknown }).input), t0, now());
      }
    },
    { step: 'initialize', name: 'timing' },
  );
  return client;
}

/**
 * The out-of-band writer (straight to DynamoDB, as a console or another service would) and its
 * probe: before each direct write the probe reads the key through the cache (so the old value is
 * cached), after it the probe reads every 25 ms until a read returns the new value (G2's lag), or
 * another write supersedes it. Its puts treat the version attribute the library writes
 * (`_version`) as another service might (issue 13: the stream's new image is compared with the
 * entry by version and content digest): `keep` writes new content under the item's current version,
 * `bump` the next version, `reset` deletes the item and creates it again at version 1 (what a
 * library put after a delete writes: two writes, each in the history), `none` writes no version.
 */
class OutOfBand {
  readonly records: OpRecord[] = [];
  readonly samples: OobSample[] = [];
  /** How many direct writes of each kind were made (see the class's note). */
  readonly modes = { delete: 0, keep: 0, bump: 0, reset: 0, none: 0 };
  private stopped = false;
  private seq = 0;
  private op = 0;
  private probeOp = 0;
  private readonly als = new AsyncLocalStorage<CallAccount>();
  readonly probe: ItemCache;

  constructor(
    private readonly raw: DynamoDBClient,
    config: Config,
    private readonly prefix: string,
    private readonly keys: { hot: KeyRef[]; cold: KeyRef[] },
    private readonly random: Rng,
  ) {
    const leaseWait = (): void => {
      const ctx = this.als.getStore();
      if (ctx) ctx.leaseWaits++;
    };
    this.probe = new ItemCache({ config, tables: TABLES, dynamoClient: timedClient(config, this.als), hooks: { leaseWait } });
  }

  stop(): void {
    this.stopped = true;
  }

  private async read(ref: KeyRef): Promise<string | undefined> {
    const ctx = newCallAccount();
    const start = now();
    const base = { op: ++this.probeOp, client: 'probe', kind: 'get' as const, key: ref.id, hot: ref.hot, start };
    try {
      const r = await this.als.run(ctx, () => this.probe.get(ref.table, ref.key));
      const value = r.item === undefined ? ABSENT : typeof r.item.v === 'string' ? r.item.v : `?${JSON.stringify(r.item.v)}`;
      this.records.push({
        ...base,
        value,
        end: now(),
        outcome: 'ok',
        source: r.cache,
        dynamoMs: ctx.dynamoMs,
        dynamoCalls: ctx.dynamoCalls,
        dynamoReads: 0,
        ...waitFields(ctx, ref.id),
      });
      return value;
    } catch (err) {
      const e = err as { code?: string; name?: string; message?: string };
      this.records.push({
        ...base,
        value: '',
        end: now(),
        outcome: 'error',
        error: e.code ?? e.name ?? 'Error',
        message: e.message,
        dynamoMs: ctx.dynamoMs,
        dynamoCalls: ctx.dynamoCalls,
        dynamoReads: 0,
        ...waitFields(ctx, ref.id),
      });
      return undefined;
    }
  }

  private keyOf(ref: KeyRef): Record<string, AttributeValue> {
    return ref.table === 'users'
      ? { userId: { S: String(ref.key.userId) } }
      : { customerId: { S: String(ref.key.customerId) }, orderId: { S: String(ref.key.orderId) } };
  }

  /** The item's current version attribute, read straight from DynamoDB (undefined: no item, or none). */
  private async currentVersion(ref: KeyRef): Promise<number | undefined> {
    const out = await this.raw.send(
      new GetItemCommand({
        TableName: this.prefix + ref.table,
        Key: this.keyOf(ref),
        ConsistentRead: true,
        ProjectionExpression: '#v',
        ExpressionAttributeNames: { '#v': '_version' },
      }),
    );
    const n = out.Item?._version?.N;
    return n === undefined ? undefined : Number(n);
  }

  private async write(ref: KeyRef, del: boolean, version?: number): Promise<OpRecord> {
    const value = del ? ABSENT : `oob-${++this.seq}`;
    const table = this.prefix + ref.table;
    const key = this.keyOf(ref);
    const versioned: Record<string, AttributeValue> = version === undefined ? {} : { _version: { N: String(version) } };
    const start = now();
    const rec: OpRecord = {
      op: ++this.op,
      client: 'oob',
      kind: del ? 'oobDelete' : 'oobPut',
      key: ref.id,
      hot: ref.hot,
      value,
      start,
      end: start,
      outcome: 'ok',
      dynamoMs: 0,
      dynamoCalls: 1,
      dynamoReads: 0,
    };
    try {
      if (del) await this.raw.send(new DeleteItemCommand({ TableName: table, Key: key }));
      else
        await this.raw.send(
          new PutItemCommand({ TableName: table, Item: { ...key, v: { S: value }, pad: { S: 'o'.repeat(200) }, ...versioned } }),
        );
    } catch (err) {
      const e = err as { name?: string; message?: string };
      rec.outcome = 'error';
      rec.error = e.name ?? 'Error';
      rec.message = e.message;
    }
    rec.end = now();
    rec.dynamoMs = rec.end - start;
    this.records.push(rec);
    return rec;
  }

  async run(): Promise<void> {
    while (!this.stopped) {
      const ref = this.random() < 0.25 ? pick(this.random, this.keys.hot) : pick(this.random, this.keys.cold);
      const before = await this.read(ref);
      if (before === undefined) {
        await sleep(100);
        continue;
      }
      const del = before !== ABSENT && this.random() < 0.2;
      const mode = del ? 'delete' : pick(this.random, ['keep', 'keep', 'bump', 'reset', 'none'] as const);
      this.modes[mode]++;
      let w: OpRecord;
      if (mode === 'delete') w = await this.write(ref, true);
      else if (mode === 'reset') {
        const gone = before !== ABSENT ? await this.write(ref, true) : undefined;
        w = gone !== undefined && gone.outcome !== 'ok' ? gone : await this.write(ref, false, 1);
      } else {
        let version: number | undefined;
        try {
          version = mode === 'none' ? undefined : await this.currentVersion(ref);
        } catch {
          await sleep(100);
          continue;
        }
        w = await this.write(ref, false, mode === 'bump' ? (version ?? 0) + 1 : version);
      }
      if (w.outcome !== 'ok') {
        this.samples.push({ key: ref.id, hot: ref.hot, value: w.value, writeEnd: w.end, outcome: 'error' });
        continue;
      }
      const sample: OobSample = { key: ref.id, hot: ref.hot, value: w.value, writeEnd: w.end, outcome: 'timeout' };
      const deadline = w.end + 30_000;
      while (now() < deadline) {
        const v = await this.read(ref);
        if (v === w.value) {
          sample.outcome = 'seen';
          sample.seenAt = now();
          break;
        }
        if (v !== undefined && v !== before) {
          sample.outcome = 'superseded';
          break;
        }
        if (this.stopped && now() > w.end + 5_000) break;
        await sleep(25);
      }
      if (sample.outcome === 'timeout' && now() < deadline) continue; // stopped before it was seen: no sample
      this.samples.push(sample);
      await sleep(between(this.random, 100, 400));
    }
  }
}

function machine(): RunResult['machine'] {
  let redis = '?';
  try {
    redis = /v=(\S+)/.exec(execFileSync('redis-server', ['--version']).toString())?.[1] ?? '?';
  } catch {
    /* reported as ? */
  }
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    redis,
    platform: `${process.platform} ${process.arch}`,
    loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

function revision(): RunResult['revision'] {
  const git = (...args: string[]): string => {
    try {
      return execFileSync('git', args, { cwd: new URL('..', import.meta.url), stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim();
    } catch {
      return '';
    }
  };
  return { commit: git('rev-parse', 'HEAD') || '?', libChanges: git('status', '--porcelain', '--', 'lib').split('\n').filter(Boolean) };
}

/**
 * A second shard map for the `remap` fault, over the same nodes: either CACHE_NODES in another order
 * (every key moves) or a CACHE_SHARD_MAP whose ranges are shifted by 20–80 % of one node's range (a
 * part of each node's keys moves, as when a map is rebalanced). Returns the settings, the shard name of
 * each CACHE_NODES entry, and the share of virtual shards whose node differs from the first map.
 */
export function otherShardMap(
  first: { url: string; name: string }[],
  random: Rng,
): { env: Record<string, string>; nodeNames: string[]; label: string; movedShare: number } {
  const n = first.length;
  const contiguous = (s: number): number => Math.floor((s * n) / VIRTUAL_SHARDS);
  if (random() < 0.5) {
    const by = 1 + Math.floor(random() * (n - 1));
    const rotated = [...first.slice(by), ...first.slice(0, by)];
    return {
      env: { CACHE_NODES: rotated.map((x) => x.url).join(',') },
      nodeNames: rotated.map((x) => x.name),
      label: `CACHE_NODES rotated by ${by}`,
      movedShare: 1,
    };
  }
  // Less than one node's range, so that only a part of each node's shards moves.
  const width = Math.floor(VIRTUAL_SHARDS / n);
  const offset = Math.max(1, Math.floor(width * between(random, 0.2, 0.8)));
  const map = Array.from({ length: VIRTUAL_SHARDS }, (_, s) => contiguous((s + offset) % VIRTUAL_SHARDS));
  const ranges: string[] = [];
  for (let s = 0; s < VIRTUAL_SHARDS; ) {
    let t = s;
    while (t + 1 < VIRTUAL_SHARDS && map[t + 1] === map[s]) t++;
    ranges.push(`${s}-${t}:${map[s]}`);
    s = t + 1;
  }
  const moved = map.filter((node, s) => node !== contiguous(s)).length / VIRTUAL_SHARDS;
  return {
    env: { CACHE_SHARD_MAP: ranges.join(',') },
    nodeNames: first.map((x) => x.name),
    label: `CACHE_SHARD_MAP shifted by ${offset}`,
    movedShare: moved,
  };
}

export async function runConsistency(partial: Partial<RunOptions> = {}): Promise<RunResult> {
  const o: RunOptions = { ...defaultRunOptions, ...partial };
  const log = o.log;
  const random = rng(o.seed);
  const startedAt = new Date();
  logger.setLogLevel('SILENT');
  // The replayer's and the sweep's metrics (EMF lines on stdout) would interleave with the report.
  process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const stack = await Stack.start({
    shards: o.shards,
    containers: o.workers,
    dynamoEndpoint: o.dynamoEndpoint ?? process.env.DYNAMODB_ENDPOINT,
    mode: o.mode,
    log,
  });
  log(stack.describe());
  // Shards mode: each node watched the whole run (network.ts), so that a failed request can be told
  // to have come while its node answered nobody, no fault injected (checker.ts nodeSilentMs). Cluster
  // mode is not watched: a failover moves a pair's primary to another port.
  if (stack.cluster === undefined) {
    for (const { name } of stack.nodeList(-1)) await stack.network.watch(name, stack.pingPort(name));
  }
  // The main thread's consumer, replayer and probe (-1) reach DynamoDB directly; client containers
  // through the proxy the `blackhole` fault cuts.
  const env = (container: number): Record<string, string> => ({
    ...settings(o),
    ...(o.mode === 'cluster' ? { CACHE_MODE: 'cluster' } : {}),
    CACHE_NODES: stack.nodes(container),
    DYNAMODB_ENDPOINT: container >= 0 ? stack.containerDynamoEndpoint : stack.endpoint,
    TABLE_PREFIX: stack.prefix,
    STREAM_PARKING_TABLE: stack.parkingTable,
  });
  const keys = keySpace(o.keys);
  /** Every container started (their histories are read at the end); `live`: those still running. */
  const containers: ContainerThread[] = [];
  const live = new Set<ContainerThread>();
  let dynamoMode: DynamoFaultMode = 'off';
  const historyDir = mkdtempSync(join(tmpdir(), 'consistency-'));
  const mainDelay = monitorEventLoopDelay({ resolution: 10 });
  mainDelay.enable();
  let networkLagMs = 0;
  let lagPoll: NodeJS.Timeout | undefined;
  let feed: StreamFeed | undefined;
  let consumer: ItemCache | undefined;
  let replayer: ItemCache | undefined;
  let sweeper: ItemCache | undefined;
  let oob: OutOfBand | undefined;
  let inspector: ConsistencyInspector | undefined;
  const inconsistencies: Inconsistency[] = [];
  const streamCounts = { hotInvalidations: 0, replayed: 0, replayRetries: 0 };
  try {
    // The Streams consumer: its own container, fed as Lambda's event source mapping feeds it.
    // It parks what it cannot apply; the replayer, a container of its own, applies that later.
    consumer = new ItemCache({ config: loadConfig(env(-1)), tables: TABLES });
    const consumerCache = consumer;
    inspector = new ConsistencyInspector(consumerCache, { sampleRate: 1, delayMs: 2000 });
    const sampler = inspector;
    replayer = new ItemCache({ config: loadConfig(env(-1)), tables: TABLES });
    const replay = createReplayHandler(replayer);
    // The sweep of parked invalidations: a container of its own, on the deploy's schedule (serverless.yml).
    sweeper = new ItemCache({ config: loadConfig(env(-1)), tables: TABLES });
    feed = new StreamFeed({
      client: localDynamoClientConfig(stack.endpoint),
      tables: stack.physicalTables,
      pollMs: o.streamPollMs,
      handler: async (event) => {
        const res = await invalidateStreamRecords(consumerCache, event.Records, {
          parkingTable: stack.parkingTable,
          onApplied: sampler.applied,
        });
        inconsistencies.push(...(await sampler.checkDue()));
        const failed = new Set(res.batchItemFailures.map((f) => f.itemIdentifier));
        for (const r of event.Records) {
          const id = (r.dynamodb?.Keys as Record<string, { S?: string }> | undefined)?.userId?.S;
          if (id?.startsWith('hot-') && !failed.has(r.dynamodb?.SequenceNumber ?? '')) streamCounts.hotInvalidations++;
        }
        return res;
      },
      schedules: [{ everyMs: 60_000, handler: createSweepHandler(sweeper) }],
      subscriptions: [
        {
          table: stack.parkingTable,
          handler: async (event) => {
            const res = await replay(event);
            streamCounts.replayRetries += res.batchItemFailures.length > 0 ? 1 : 0;
            streamCounts.replayed += event.Records.filter((r) => r.eventName !== 'REMOVE').length - res.batchItemFailures.length;
            return res;
          },
        },
      ],
    });
    await feed.start();

    // The client containers.
    const entry = new URL('./worker.ts', import.meta.url).href;
    // Every address any container uses, by shard name (the main thread's list last).
    const addressNames = stack.addressNames(o.workers);
    const startContainer = (client: string, seed: number, containerEnv: Record<string, string>, nodeNames: string[]): ContainerThread => {
      const wc: WorkerConfig = {
        entry,
        client,
        env: containerEnv,
        nodeNames,
        addressNames,
        seed,
        concurrency: o.concurrency,
        thinkMs: o.thinkMs,
        keys: o.keys,
        hotShare: o.hotShare,
        historyFile: join(historyDir, `${client}.ndjson`),
      };
      const worker = new Worker(new URL('./boot.mjs', import.meta.url), {
        workerData: wc,
        env: {
          ...process.env,
          POWERTOOLS_LOG_LEVEL: process.env.CONSISTENCY_LOG_LEVEL ?? 'SILENT',
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        },
      });
      const c = new ContainerThread(client, worker);
      containers.push(c);
      return c;
    };
    /** Starts the load of warm containers (with the DynamoDB fault mode now on). */
    const launch = async (cs: ContainerThread[]): Promise<void> => {
      await Promise.all(cs.map((c) => c.ready));
      for (const c of cs) {
        live.add(c);
        if (dynamoMode !== 'off') c.send({ type: 'dynamoFault', mode: dynamoMode });
        c.send({ type: 'start' });
      }
    };
    /** A container that goes away (a deploy replaced it): its load stops, its clients close. */
    const retire = async (c: ContainerThread): Promise<void> => {
      live.delete(c);
      await c.request({ type: 'stop' }, 'stopped');
      await c.request({ type: 'close' }, 'closed');
    };
    for (let i = 0; i < o.workers; i++) {
      startContainer(
        `w${i}`,
        o.seed * 1000 + i,
        env(i),
        stack.nodeList(i).map((n) => n.name),
      );
    }
    await Promise.all(containers.map((c) => c.ready));
    oob = new OutOfBand(stack.dynamo, loadConfig(env(-1)), stack.prefix, keys, rng(o.seed * 7919));
    const dynamoFaults = async (mode: DynamoFaultMode): Promise<void> => {
      dynamoMode = mode;
      for (const c of live) c.send({ type: 'dynamoFault', mode });
    };
    // Two shard maps live, then a rollback (the `remap` fault): containers on another map (the node
    // list in another order, or another CACHE_SHARD_MAP) join for the window; then they go away and
    // new containers on the first map come (a rollback), and stay until the next remap replaces them.
    let remaps = 0;
    let rolledBack: ContainerThread[] = [];
    const remap = async (ms: number): Promise<RemapOutcome> => {
      if (o.mode === 'cluster') throw new Error('remap is a fault of shards mode (cluster mode: migrate)');
      const n = remaps++;
      const first = stack.nodeList(-1);
      const firstEnv = { ...env(-1), DYNAMODB_ENDPOINT: stack.containerDynamoEndpoint };
      const other = otherShardMap(first, random);
      const k = o.remapContainers;
      const procedure = o.remapMode === 'procedure';
      // README's procedure: an all-at-once deploy, so the first map's containers finish what they
      // hold and take nothing more (the last rollback's go away, the others wait for the rollback).
      const paused = procedure ? [...live].filter((c) => !rolledBack.includes(c)) : [];
      if (procedure) {
        await Promise.all([
          ...rolledBack.map(retire),
          ...paused.map(async (c) => {
            live.delete(c);
            await c.request({ type: 'stop' }, 'stopped');
          }),
        ]);
        rolledBack = [];
      }
      const newMap = Array.from({ length: k }, (_, i) =>
        startContainer(`r${n}new${i}`, o.seed * 1000 + 100 + 2 * k * n + i, { ...firstEnv, ...other.env }, other.nodeNames),
      );
      await launch(newMap);
      if (procedure) await stack.flushAll();
      const start = now();
      await sleep(ms);
      await Promise.all([...newMap, ...rolledBack].map(retire));
      if (procedure) await stack.flushAll();
      rolledBack = Array.from({ length: k }, (_, i) =>
        startContainer(
          `r${n}old${i}`,
          o.seed * 1000 + 100 + 2 * k * n + k + i,
          firstEnv,
          first.map((x) => x.name),
        ),
      );
      await launch([...rolledBack, ...paused]);
      const end = now();
      return {
        start,
        end,
        target: procedure ? `${other.label}, README procedure` : other.label,
        clients: [...newMap, ...rolledBack].map((c) => c.name),
        detail: { mode: o.remapMode, ...other.env, movedKeysShare: other.movedShare },
      };
    };
    const nemesis = new Nemesis({
      stack,
      feed,
      dynamoFaults,
      remap,
      random,
      log,
      slowOverlay: o.faults.includes('slow'),
      commandTimeoutMs: o.commandTimeoutMs,
    });
    const slotted = o.faults.filter((k) => !OVERLAY_FAULTS.has(k));

    // Load.
    const t0 = now();
    const endAt = t0 + o.seconds * 1000;
    log(
      `run: ${o.seconds} s, ${o.mode} mode, policy ${o.policy}, ${o.workers} containers × ${o.concurrency} loops, faults ${o.faults.join(',') || 'none'}, seed ${o.seed}`,
    );
    await launch([...containers]);
    lagPoll = setInterval(() => {
      void stack.network.lag().then(
        (l) => (networkLagMs = Math.max(networkLagMs, l)),
        () => {},
      );
    }, 1000);
    const oobDone = oob.run();
    const warmupMs = Math.min(3000, o.seconds * 50);
    const tailMs = Math.min(3000, o.seconds * 100);
    await sleep(warmupMs);
    if (slotted.length > 0) {
      // Every fault once (in a seeded order) whatever the length, then more rounds while time is left.
      const slotMs = Math.max(2500, Math.min(6000, (o.seconds * 1000 - warmupMs - tailMs) / slotted.length));
      for (let round = 0; ; round++) {
        let cut = false;
        for (const kind of shuffled(random, slotted)) {
          const slotEnd = now() + slotMs;
          if (round > 0 && slotEnd > endAt - tailMs) {
            cut = true;
            break;
          }
          await nemesis.inject(kind, faultDuration(kind, slotMs, random));
          await sleep(slotEnd - now());
        }
        if (cut || now() + slotMs > endAt - tailMs) break;
      }
    }
    await sleep(endAt - now());
    clearInterval(lagPoll);
    oob.stop();
    await Promise.all([...live].map((c) => c.request({ type: 'stop' }, 'stopped')));
    await oobDone;
    log(`load stopped after ${Math.round((now() - t0) / 1000)} s; letting the stream drain and nodes recover`);
    log(
      `out-of-band writes: ${JSON.stringify(oob.modes)} (keep: new content under the current version; bump; reset: delete and create at 1; none: no version)`,
    );
    // Quiet: every fault lifted; the stream drains, nodes come back up in every container.
    await sleep(Math.max(3500, 2 * o.streamPollMs + 1000));
    await Promise.all([...live].map((c) => c.request({ type: 'sweep' }, 'swept')));
    await Promise.all([...live].map((c) => c.request({ type: 'close' }, 'closed')));

    // The samples still waiting: checked now (the check holds at any time after the invalidation).
    inconsistencies.push(...(await inspector.checkDue(Number.POSITIVE_INFINITY)));
    mainDelay.disable();
    const records: OpRecord[] = [...oob.records];
    for (const c of containers) {
      for (const line of readFileSync(join(historyDir, `${c.name}.ndjson`), 'utf8').split('\n')) {
        if (line) records.push(JSON.parse(line) as OpRecord);
      }
    }
    if (o.historyFile) {
      const lines = [
        ...nemesis.windows.map((w) => JSON.stringify({ fault: w })),
        ...oob.samples.map((s) => JSON.stringify({ oob: s })),
        ...records.map((r) => JSON.stringify(r)),
      ];
      writeFileSync(o.historyFile, `${lines.join('\n')}\n`);
      log(`history: ${o.historyFile} (${records.length} records)`);
    }
    // A silence around a command the node logged as slow (to the second) was the node at work.
    const slowCommands = await stack.slowCommands();
    const nodeSilences = (await stack.network.silences()).map((s) => {
      const slow = slowCommands.find((c) => c.node === s.node && c.at - 1000 <= s.end && c.at + c.durationMs + 1000 >= s.start);
      return slow === undefined ? s : { ...s, busyWith: slow.command };
    });
    if (o.historyFile) appendFileSync(o.historyFile, nodeSilences.map((s) => `${JSON.stringify({ silence: s })}\n`).join(''));
    const result = check(records, nemesis.windows, oob.samples, {
      nodeSilences,
      policy: o.policy,
      commandTimeoutMs: o.commandTimeoutMs,
      staleBoundMs: 1000 + o.streamPollMs,
      hotStreamInvalidations: streamCounts.hotInvalidations,
    });
    const faults: Partial<Record<FaultKind, number>> = {};
    for (const w of nemesis.windows) faults[w.kind] = (faults[w.kind] ?? 0) + 1;
    const violations: string[] = [];
    if (result.staleReads > 0) violations.push(`${result.staleReads} stale reads`);
    if (result.phantomReads > 0) violations.push(`${result.phantomReads} phantom reads`);
    if (inconsistencies.length > 0) violations.push(`${inconsistencies.length} inconsistencies found by the inspector`);
    if (result.failedRequests > 0) violations.push(`${result.failedRequests} failed requests while DynamoDB was healthy`);
    if (o.policy === 'available' && result.boundedStaleReads.beyondBound > 0) {
      violations.push(`${result.boundedStaleReads.beyondBound} stale reads (unreachable node) older than ${1000 + o.streamPollMs} ms`);
    }
    const finishedAt = new Date();
    const { log: _log, dynamoEndpoint: _e, historyFile: _h, ...shown } = o;
    return {
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      durationSeconds: o.seconds,
      machine: machine(),
      revision: revision(),
      options: { ...shown, settings: settings(o) },
      ...result,
      slowCommands,
      faults,
      faultLog: nemesis.windows.map((w) => ({ ...w, relStartMs: Math.round(w.start - t0), durationMs: Math.round(w.end - w.start) })),
      stream: { ...feed.stats, ...streamCounts },
      inspector: { checked: inspector.checked, inconsistencies },
      endHealth: Object.fromEntries(containers.map((c) => [c.name, c.health])),
      eventLoopDelayMs: {
        harness: { p99: Math.round(mainDelay.percentile(99) / 1e5) / 10, max: Math.round(mainDelay.max / 1e5) / 10 },
        network: { p99: 0, max: Math.round(networkLagMs * 10) / 10 },
        ...Object.fromEntries(containers.map((c) => [c.name, c.eventLoopDelayMs])),
      },
      verdict: { ok: violations.length === 0, policy: o.policy, violations },
    };
  } finally {
    clearInterval(lagPoll);
    oob?.stop();
    await Promise.all(containers.map((c) => c.terminate().catch(() => {})));
    await feed?.stop().catch(() => {});
    await consumer?.close().catch(() => {});
    await replayer?.close().catch(() => {});
    await sweeper?.close().catch(() => {});
    await oob?.probe.close().catch(() => {});
    await stack.stop();
    rmSync(historyDir, { recursive: true, force: true });
  }
}
