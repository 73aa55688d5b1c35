/**
 * One client container (a Lambda instance): its own ItemCache, so its own Redis clients and node
 * health, running random operations over the key space and recording each one. Runs in a worker
 * thread (loaded by boot.mjs); talks to the harness by messages.
 *
 * DynamoDB calls go through an SDK middleware that times them, counts item reads (with the wall-clock
 * span of each read call, per item), and — while the harness says a DynamoDB fault is on — injects
 * errors before sending or after the answer, timeouts and latency, recording which into the
 * operation's record. A protocol hook counts the operation's waits on another reader's fill lease.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { dynamoClientFor } from '../lib/store.ts';
import { createWriteStream } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  CacheLibraryError,
  CacheUnavailableError,
  ItemCache,
  ItemNotFoundError,
  VersionMismatchError,
  exampleTables,
  loadConfig,
  type Item,
  type NodeHealth,
} from '../lib/index.ts';
import {
  ABSENT,
  newCallAccount,
  recordCall,
  waitFields,
  type CallAccount,
  type DynamoFaultMode,
  type OpKind,
  type OpRecord,
  type Outcome,
} from './history.ts';
import { refusedAt } from './checker.ts';
import { idOfItem, keySpace, readIdsOf, type KeyRef, type KeySpaceOptions } from './keys.ts';
import { between, now, pick, rng, sleep, type Rng } from './rng.ts';

export interface WorkerConfig {
  entry: string;
  client: string;
  env: Record<string, string>;
  /** The shard name (`shard0`…, as fault windows name them) of each CACHE_NODES entry, in order. */
  nodeNames: string[];
  /**
   * The shard name of every address any container uses (their maps differ: proxies, per-container
   * endpoints, another shard map): a write fences its key's node under every live map (lib/cache/maps.ts),
   * so a refusal names the node that could not be reached, which may be another map's.
   */
  addressNames?: Record<string, string>;
  seed: number;
  concurrency: number;
  thinkMs: [number, number];
  keys: KeySpaceOptions;
  /** Probability that an operation picks a hot key. */
  hotShare: number;
  /** Where this container appends its records (NDJSON), so no thread holds the history in memory. */
  historyFile: string;
}

export type ToWorker =
  | { type: 'start' }
  | { type: 'dynamoFault'; mode: DynamoFaultMode }
  | { type: 'stop' }
  | { type: 'sweep' }
  | { type: 'close' };
export type FromWorker =
  | { type: 'ready' }
  | { type: 'stopped'; ops: number }
  | { type: 'swept' }
  | { type: 'closed'; health: NodeHealth[]; eventLoopDelayMs: { p99: number; max: number } }
  | { type: 'failed'; message: string };

interface OpContext extends CallAccount {
  reads: Map<string, number>;
  injected?: 'before' | 'after';
  delayMs: number;
  degraded: boolean;
  endLost: boolean;
  sweep: boolean;
  cacheErrors: string[];
}

const cfg = workerData as WorkerConfig;
const port = parentPort;
if (port === null) throw new Error('worker.ts runs in a worker thread');
const post = (m: FromWorker): void => port.postMessage(m);

const random: Rng = rng(cfg.seed);
const faultRandom: Rng = rng(cfg.seed ^ 0x5bd1e995);
const keys = keySpace(cfg.keys);
const als = new AsyncLocalStorage<OpContext>();
let dynamoFault: DynamoFaultMode = 'off';
let stopping = false;
let opSeq = 0;
let writeSeq = 0;
let buffer: OpRecord[] = [];
const history = createWriteStream(cfg.historyFile, { flags: 'w' });
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

/**
 * This container's own event loop stalls (its thread not scheduled: a loaded machine), kept so that an
 * operation's record says how long its container stood still meanwhile (`starvedMs`). A command whose
 * answer arrives during such a stall times out (the timer phase runs before I/O), so a strict refusal
 * with no fault on its node is judged knowing it (checker.ts, starvation).
 */
const STALL_TICK_MS = 10;
const STALL_MIN_MS = 50;
const stalls: { from: number; to: number }[] = [];
let lastTick = now();
setInterval(() => {
  const t = now();
  if (t - lastTick - STALL_TICK_MS >= STALL_MIN_MS) {
    stalls.push({ from: lastTick + STALL_TICK_MS, to: t });
    if (stalls.length > 256) stalls.shift();
  }
  lastTick = t;
}, STALL_TICK_MS).unref();

/** The longest stall of this thread's loop that overlapped [start, end] (one still going counts up to `end`), or 0. */
function starvedDuring(start: number, end: number): number {
  let longest = Math.max(0, end - (lastTick + STALL_TICK_MS) >= STALL_MIN_MS ? end - lastTick - STALL_TICK_MS : 0);
  for (const s of stalls) if (s.to >= start && s.from <= end) longest = Math.max(longest, s.to - s.from);
  return Math.round(longest);
}

const config = loadConfig(cfg.env);
const timeoutMs = config.store.timeoutMs;

class InjectedError extends Error {
  readonly $metadata: { httpStatusCode?: number };
  constructor(name: string, message: string, status?: number) {
    super(message);
    this.name = name;
    this.$metadata = status === undefined ? {} : { httpStatusCode: status };
  }
}

/** The client the library would build from the settings, plus the harness's middleware. */
function dynamoClient(): DynamoDBClient {
  const client = dynamoClientFor(config.store);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const ctx = als.getStore();
      const t0 = now();
      let readIds: string[] = [];
      try {
        if (ctx) readIds = countReads(context.commandName ?? '', (args as { input: unknown }).input, ctx);
        if (ctx && dynamoFault === 'slow' && !ctx.sweep && faultRandom() < 0.4) {
          // Slow but healthy: the call succeeds after a latency spike (shorter than the SDK's timeout).
          const ms = Math.round(between(faultRandom, 100, Math.min(900, 0.9 * timeoutMs)));
          ctx.delayMs += ms;
          await sleep(ms);
        }
        if (ctx && dynamoFault === 'errors' && !ctx.sweep && ctx.injected === undefined) {
          const r = faultRandom();
          if (r < 0.15) {
            ctx.injected = 'before';
            throw new InjectedError('InternalServerError', 'injected: DynamoDB 500 before sending', 500);
          }
          if (r < 0.25) {
            // A request that never got an answer: the SDK gives up after its timeout; nothing was sent.
            ctx.injected = 'before';
            ctx.delayMs += timeoutMs;
            await sleep(timeoutMs);
            throw new InjectedError('TimeoutError', `injected: no answer within ${timeoutMs} ms (not sent)`);
          }
          if (r < 0.35) {
            const out = await next(args);
            // Committed, but the answer was lost: the caller sees a timeout.
            ctx.injected = 'after';
            ctx.delayMs += timeoutMs / 2;
            await sleep(timeoutMs / 2);
            throw new InjectedError('TimeoutError', 'injected: answer lost after the request was applied');
          }
          if (r < 0.55) {
            const ms = Math.round(between(faultRandom, 50, 400));
            ctx.delayMs += ms;
            await sleep(ms);
          }
        }
        return await next(args);
      } finally {
        if (ctx) recordCall(ctx, readIds, t0, now());
      }
    },
    { step: 'initialize', name: 'consistencyHarness', priority: 'high' },
  );
  return client;
}

/** Counts the item reads of a GetItem / BatchGetItem call into the context; returns their item ids. */
function countReads(command: string, input: unknown, ctx: OpContext): string[] {
  const ids = readIdsOf(command, input);
  for (const id of ids) ctx.reads.set(id, (ctx.reads.get(id) ?? 0) + 1);
  return ids;
}

/** A reader found another reader's live fill lease and is about to sleep before polling again (G5). */
function leaseWait(): void {
  const ctx = als.getStore();
  if (ctx) ctx.leaseWaits++;
}

const cache = new ItemCache({ config, tables: exampleTables, dynamoClient: dynamoClient(), hooks: { leaseWait } });

// Which writes could not reach their node: the library logs and keeps them as dirty keys (R6);
// the harness attributes each to the operation that caused it. In cluster mode the nodes are the
// primaries the topology names, learnt after start and again after a failover: each is instrumented
// when first seen (instrumentNodes, before every operation).
const instrumented = new WeakSet<object>();
function instrumentNodes(): void {
  for (const node of cache.shards.nodes) {
    if (instrumented.has(node)) continue;
    instrumented.add(node);
    // Which Redis steps failed during an operation (for diagnosing latency and violations).
    const fail = node.fail.bind(node);
    node.fail = (err: unknown, during: string): void => {
      const ctx = als.getStore();
      if (ctx) ctx.cacheErrors.push(`${during}@${node.id}: ${err instanceof Error ? err.message : String(err)}`.slice(0, 120));
      fail(err, during);
    };
    const dirty = node.dirty;
    const add = dirty.add.bind(dirty);
    dirty.add = (itemKey: string, reason: string): void => {
      const ctx = als.getStore();
      if (ctx && reason.startsWith('begin-write')) ctx.degraded = true;
      if (ctx && reason.startsWith('end-write')) ctx.endLost = true;
      add(itemKey, reason);
    };
  }
}
instrumentNodes();

function classify(err: unknown): { outcome: Outcome; error: string; message: string; maybeWritten?: true } {
  const message = err instanceof Error ? err.message : String(err);
  // A refusal after an SDK retry may follow an applied attempt whose answer was lost (nothingWritten false).
  const maybe = err instanceof CacheLibraryError && !err.nothingWritten ? { maybeWritten: true as const } : {};
  if (err instanceof ItemNotFoundError) return { outcome: 'rejected', error: 'ItemNotFound', message, ...maybe };
  if (err instanceof VersionMismatchError) return { outcome: 'rejected', error: 'VersionMismatch', message, ...maybe };
  if (err instanceof CacheUnavailableError) return { outcome: 'rejected', error: 'CacheUnavailable', message };
  if (err instanceof CacheLibraryError) return { outcome: 'error', error: err.code, message };
  return { outcome: 'error', error: err instanceof Error ? err.name : 'Error', message };
}

function valueOf(item: Item | undefined): string {
  if (item === undefined) return ABSENT;
  return typeof item.v === 'string' ? item.v : `?${JSON.stringify(item.v)}`;
}

interface Planned {
  kind: OpKind;
  refs: KeyRef[];
  value: string;
  run: () => Promise<{ values?: Map<string, { value: string; source: string }> }>;
}

function pad(): string {
  return 'x'.repeat(Math.floor(between(random, 100, 600)));
}

function chooseKey(): KeyRef {
  return random() < cfg.hotShare ? pick(random, keys.hot) : pick(random, keys.cold);
}

function plan(): Planned {
  const r = random();
  if (r < 0.4) {
    const ref = chooseKey();
    return {
      kind: 'get',
      refs: [ref],
      value: '',
      run: async () => {
        const res = await cache.get(ref.table, ref.key);
        return { values: new Map([[ref.id, { value: valueOf(res.item), source: res.cache }]]) };
      },
    };
  }
  if (r < 0.55) {
    const table = random() < 0.6 ? 'users' : 'orders';
    const n = 2 + Math.floor(random() * 7);
    const chosen = new Map<string, KeyRef>();
    for (let i = 0; i < n * 3 && chosen.size < n; i++) {
      const ref = table === 'users' && random() < cfg.hotShare ? pick(random, keys.hot) : pick(random, keys.cold);
      if (ref.table === table) chosen.set(ref.id, ref);
    }
    const refs = [...chosen.values()];
    return { kind: 'batchGet', refs, value: '', run: () => batchRead(table, refs) };
  }
  const ref = chooseKey();
  const value = `${cfg.client}-${++writeSeq}`;
  if (r < 0.72) {
    return { kind: 'put', refs: [ref], value, run: async () => (await cache.put(ref.table, { ...ref.key, v: value, pad: pad() }), {}) };
  }
  if (r < 0.92) {
    return { kind: 'update', refs: [ref], value, run: async () => (await cache.update(ref.table, ref.key, { set: { v: value } }), {}) };
  }
  return { kind: 'delete', refs: [ref], value: ABSENT, run: async () => (await cache.delete(ref.table, ref.key), {}) };
}

async function batchRead(table: 'users' | 'orders', refs: KeyRef[]): Promise<{ values: Map<string, { value: string; source: string }> }> {
  const res = await cache.batchGet(
    table,
    refs.map((k) => k.key),
  );
  const found = new Map<string, string>();
  for (const item of res.items) {
    const id = idOfItem(table, item);
    if (id) found.set(id, valueOf(item));
  }
  return { values: new Map(refs.map((ref, i) => [ref.id, { value: found.get(ref.id) ?? ABSENT, source: res.sources[i] ?? '?' }])) };
}

const clusterMode = cfg.env.CACHE_MODE === 'cluster';

/** The shard name of a node's address (`redis://host:port`, or `host:port` as cluster nodes name themselves). */
function nameOfAddress(address: string): string | undefined {
  const exact = cfg.addressNames?.[address];
  if (exact !== undefined || !clusterMode) return exact;
  const port = /:(\d+)\/?$/.exec(address)?.[1];
  for (const [url, name] of Object.entries(cfg.addressNames ?? {})) if (port !== undefined && url.endsWith(`:${port}`)) return name;
  return undefined;
}

/** The shard this container's map sends a key to, by the name fault windows use (cluster mode: the primary's pair). */
function nodeNameOf(ref: KeyRef): string | undefined {
  const node = cache.nodeFor(cache.resolve(ref.table, ref.key));
  if (node === undefined) return undefined;
  return clusterMode ? nameOfAddress(node.address) : cfg.nodeNames[Number(node.id)];
}

async function execute(p: Planned, sweep = false): Promise<void> {
  instrumentNodes();
  const ctx: OpContext = { ...newCallAccount(), reads: new Map(), delayMs: 0, degraded: false, endLost: false, sweep, cacheErrors: [] };
  const op = ++opSeq;
  const start = now();
  let outcome: Outcome = 'ok';
  let error: string | undefined;
  let message: string | undefined;
  let maybeWritten: true | undefined;
  let values: Map<string, { value: string; source: string }> | undefined;
  try {
    values = (await als.run(ctx, p.run)).values;
  } catch (err) {
    ({ outcome, error, message, maybeWritten } = classify(err));
  }
  const end = now();
  const starvedMs = starvedDuring(start, end);
  const write = p.kind === 'put' || p.kind === 'update' || p.kind === 'delete';
  for (const ref of p.refs) {
    const read = values?.get(ref.id);
    // A refusal is judged by the node that refused it (named in its message), which under two live
    // maps may be the key's node under the other map; any other write by its own map's node.
    // (Cluster mode's strict refusal for want of a replica names its node too: "no replica of cache node … acknowledged".)
    const refusedBy = error === 'CacheUnavailable' ? refusedAt({ message }) : undefined;
    const node = write ? ((refusedBy !== undefined ? nameOfAddress(refusedBy) : undefined) ?? nodeNameOf(ref)) : undefined;
    buffer.push({
      op,
      client: cfg.client,
      kind: p.kind,
      key: ref.id,
      hot: ref.hot,
      value: read?.value ?? p.value,
      start,
      end,
      outcome,
      ...(error !== undefined ? { error, message } : {}),
      ...(maybeWritten ? { maybeWritten } : {}),
      ...(ctx.injected ? { injected: ctx.injected } : {}),
      ...(ctx.delayMs ? { injectedDelayMs: ctx.delayMs } : {}),
      ...(ctx.degraded ? { degraded: true } : {}),
      ...(ctx.endLost ? { endLost: true } : {}),
      ...(read ? { source: read.source } : {}),
      ...(ctx.cacheErrors.length ? { cacheErrors: ctx.cacheErrors } : {}),
      dynamoMs: ctx.dynamoMs,
      dynamoCalls: ctx.dynamoCalls,
      dynamoReads: ctx.reads.get(ref.id) ?? 0,
      ...waitFields(ctx, ref.id),
      ...(sweep ? { sweep: true } : {}),
      ...(node !== undefined ? { node } : {}),
      ...(starvedMs > 0 ? { starvedMs } : {}),
    });
  }
}

async function loop(): Promise<void> {
  while (!stopping) {
    await execute(plan());
    await sleep(between(random, cfg.thinkMs[0], cfg.thinkMs[1]));
  }
}

/** After the load: every key read once more through this container (batches of 50). */
async function sweep(): Promise<void> {
  for (const table of ['users', 'orders'] as const) {
    const refs = keys.all.filter((k) => k.table === table);
    for (let i = 0; i < refs.length; i += 50) {
      const chunk = refs.slice(i, i + 50);
      await execute({ kind: 'batchGet', refs: chunk, value: '', run: () => batchRead(table, chunk) }, true);
    }
  }
}

function flush(): void {
  if (buffer.length > 0) history.write(`${buffer.map((r) => JSON.stringify(r)).join('\n')}\n`);
  buffer = [];
}

const flusher = setInterval(flush, 200);

let loops: Promise<void>[] = [];

port.on('message', (m: ToWorker) => {
  void (async () => {
    try {
      if (m.type === 'start') {
        // Also after a 'stop': a container that took no requests for a while (a remap) takes them again.
        stopping = false;
        loops = Array.from({ length: cfg.concurrency }, () => loop());
      } else if (m.type === 'dynamoFault') dynamoFault = m.mode;
      else if (m.type === 'stop') {
        stopping = true;
        await Promise.all(loops);
        flush();
        post({ type: 'stopped', ops: opSeq });
      } else if (m.type === 'sweep') {
        await sweep();
        flush();
        post({ type: 'swept' });
      } else if (m.type === 'close') {
        clearInterval(flusher);
        flush();
        await new Promise<void>((resolve, reject) => history.end((err?: Error | null) => (err ? reject(err) : resolve())));
        const health = cache.health();
        await cache.close();
        loopDelay.disable();
        const ms = (ns: number): number => Math.round(ns / 1e5) / 10;
        post({ type: 'closed', health, eventLoopDelayMs: { p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) } });
      }
    } catch (err) {
      post({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    }
  })();
});

// A warm container: every node connected and its epoch verified before the run's clock starts
// (cold starts are not what is measured).
void (async () => {
  const until = Date.now() + 15_000;
  // Its shard map registered on the nodes (lib/cache/maps.ts), as a container's first request does.
  await cache.shards.view?.refresh();
  // Cluster mode: the topology learnt from the seed, and every primary verified.
  if (clusterMode) {
    while (Date.now() < until && !(cache.shards.nodes.length >= 3 && cache.shards.nodes.every((n) => n.readable))) {
      await cache.checkHealth();
      await sleep(20);
    }
    instrumentNodes();
  }
  while (Date.now() < until && !cache.shards.nodes.every((n) => n.readable)) await sleep(20);
  post({ type: 'ready' });
})();
