/**
 * The nemesis: injects one fault at a time and records its window (when it started, when it was
 * lifted, and for a node fault when the node first answered a PING again). Node faults pick a plain
 * shard at random; the failover fault uses the replicated shard; the partition cuts client container
 * w0 from one shard; DynamoDB faults are switched on in every container's SDK middleware, or (the
 * black hole) cut at the containers' socket; the stream fault pauses the Streams consumer; a remap
 * runs containers on another shard map for a while, then on the first map again (harness.ts).
 *
 * In cluster mode (`stack.cluster`) the node faults pick one primary of the cluster (named after its
 * pair, `shard0`…, as the records name the nodes their keys went to), the failover promotes that
 * primary's replica (CLUSTER FAILOVER TAKEOVER), and `migrate` moves slots between two primaries.
 */
import { rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { StreamFeed } from '../infra/local/stream-feed.ts';
import type { RedisServer } from '../infra/local/redis-server.ts';
import { clusterFailover, failover, migrateSlots, type ClusterShard, type Stack } from './stack.ts';
import { tagForSlot } from '../lib/cache/slots.ts';
import { CACHE_FAULTS, type DynamoFaultMode, type FaultKind, type FaultWindow } from './history.ts';
import { between, now, pick, sleep, type Rng } from './rng.ts';

/** The eviction policies the `maxmemory` fault picks from, one per window. */
export const MAXMEMORY_POLICIES = ['allkeys-lru', 'volatile-lru', 'allkeys-lfu', 'volatile-ttl'] as const;

/** What the harness did for a `remap` window: which containers ran which map. */
export interface RemapOutcome {
  start: number;
  end: number;
  target: string;
  /** Containers that ran the other map during the window, and those started on the first map after it. */
  clients: string[];
  detail: Record<string, unknown>;
}

export interface NemesisDeps {
  stack: Stack;
  feed: StreamFeed;
  /** Switches injected DynamoDB faults on or off in every client container. */
  dynamoFaults: (mode: DynamoFaultMode) => Promise<void>;
  /** Overlay DynamoDB latency spikes on every node fault (the `slow` fault). */
  slowOverlay: boolean;
  /** The containers' command timeout: stalls last from a third of it to a third more than it. */
  commandTimeoutMs: number;
  /** Runs containers on another shard map for about `ms`, then new containers on the first map (harness.ts). */
  remap: (ms: number) => Promise<RemapOutcome>;
  random: Rng;
  log: (m: string) => void;
}

function info(text: string, field: string): number {
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** One PING on a new connection: resolves when `+PONG` (or an AUTH error: it answers) arrives. */
function pingOnce(port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (b) => {
      reply += b.toString();
      if (!reply.includes('\r\n')) return;
      const at = now();
      if (reply.startsWith('+PONG') || reply.startsWith('-NOAUTH')) {
        done();
        resolve(at);
      } else done(new Error(`answered ${reply.trim()}`)); // -LOADING: not yet
    });
    socket.on('error', (err) => done(err));
  });
}

/**
 * When the server behind `port` first answers a PING (connections retried every 5 ms until
 * `boundMs`); undefined if it never did. Run right after a fault is lifted: it is the checker's
 * `answeredAt`, from which strict refusals on the node are no longer excused (plus one command timeout).
 */
export async function firstAnswer(port: number, boundMs = 30_000): Promise<number | undefined> {
  const until = now() + boundMs;
  while (now() < until) {
    try {
      return await pingOnce(port, Math.max(50, Math.min(5000, until - now())));
    } catch {
      await sleep(5);
    }
  }
  return undefined;
}

/** One CLUSTER INFO on a new connection: resolves when the node says `cluster_state:ok`. */
function clusterOkOnce(port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write('*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n'));
    socket.on('data', (b) => {
      reply += b.toString();
      const state = /cluster_state:(\w+)/.exec(reply)?.[1];
      if (state === undefined) {
        if (reply.startsWith('-')) done(new Error(`answered ${reply.trim()}`));
        return;
      }
      const at = now();
      if (state === 'ok') {
        done();
        resolve(at);
      } else done(new Error(`cluster_state:${state}`));
    });
    socket.on('error', (err) => done(err));
  });
}

/**
 * Cluster mode's `answeredAt`: a restarted primary answers PING at once but refuses every key with
 * CLUSTERDOWN until it has rejoined the cluster (`cluster_state:ok`), so it answers a client only then.
 */
export async function firstServing(port: number, boundMs = 30_000): Promise<number | undefined> {
  const until = now() + boundMs;
  while (now() < until) {
    try {
      return await clusterOkOnce(port, Math.max(50, Math.min(5000, until - now())));
    } catch {
      await sleep(5);
    }
  }
  return undefined;
}

export class Nemesis {
  readonly windows: FaultWindow[] = [];

  constructor(private readonly d: NemesisDeps) {}

  private shard(): { server: RedisServer; name: string } {
    const pairs = this.d.stack.cluster;
    if (pairs !== undefined) {
      const pair = pairs[Math.floor(this.d.random() * pairs.length)] as ClusterShard;
      return { server: pair.primary, name: pair.name };
    }
    const i = Math.floor(this.d.random() * this.d.stack.plain.length);
    return { server: this.d.stack.plain[i] as RedisServer, name: `shard${i}` };
  }

  /** Injects `kind` for about `durationMs` and returns when it has been lifted (a `stall` slot holds several windows). */
  async inject(kind: FaultKind, durationMs: number): Promise<FaultWindow[]> {
    const overlay = this.d.slowOverlay && (CACHE_FAULTS.has(kind) || kind === 'migrate');
    let slowStart = 0;
    if (overlay) {
      await this.d.dynamoFaults('slow');
      slowStart = now();
      await sleep(between(this.d.random, 0, 300)); // writes in flight, slow, when the node fault hits
    }
    try {
      return await this.injectNow(kind, durationMs);
    } finally {
      if (overlay) {
        await sleep(1000); // and slow while containers recover
        await this.d.dynamoFaults('off');
        const w: FaultWindow = { kind: 'slow', target: 'dynamodb', start: slowStart, end: now() };
        this.windows.push(w);
      }
    }
  }

  /** A node outage: half the time a blip (shorter than a slow DynamoDB write), else `ms`. */
  private downtime(ms: number): number {
    return this.d.random() < 0.5 ? Math.round(between(this.d.random, 0, 150)) : ms;
  }

  /** The node fault's window, with when the node (through `port`) first answered after it was lifted (cluster mode: served keys again, firstServing). */
  private async answered(w: FaultWindow, port: number): Promise<FaultWindow> {
    const at = this.d.stack.cluster === undefined ? await firstAnswer(port) : await firstServing(port);
    return at === undefined ? { ...w, detail: { ...w.detail, neverAnswered: true } } : { ...w, answeredAt: at };
  }

  private async injectNow(kind: FaultKind, durationMs: number): Promise<FaultWindow[]> {
    const ms = Math.round(durationMs);
    let w: FaultWindow;
    switch (kind) {
      case 'kill': {
        const { server, name } = this.shard();
        const start = now();
        const down = this.downtime(ms);
        await server.kill();
        rmSync(join(server.dir, 'dump.rdb'), { force: true }); // restart empty
        await sleep(down);
        await server.startAgain();
        w = await this.answered({ kind, target: name, node: name, start, end: now(), detail: { downMs: down } }, server.port);
        break;
      }
      case 'hang': {
        const { server, name } = this.shard();
        const start = now();
        server.pause();
        await sleep(ms);
        server.resume();
        w = await this.answered({ kind, target: name, node: name, start, end: now(), detail: { stoppedMs: ms } }, server.port);
        break;
      }
      case 'stall':
        return this.stalls(ms);
      case 'restart': {
        const { server, name } = this.shard();
        await server.save();
        const start = now();
        const down = this.downtime(ms);
        await server.kill();
        await sleep(down);
        await server.startAgain(); // loads the dump: the old entries, a new run_id
        w = await this.answered({ kind, target: name, node: name, start, end: now(), detail: { downMs: down } }, server.port);
        break;
      }
      case 'evict': {
        const { server, name } = this.shard();
        w = await this.answered(await this.evictionStorm(server, name, ms), server.port);
        break;
      }
      case 'maxmemory': {
        const { server, name } = this.shard();
        w = await this.answered(await this.memoryPressure(server, name, ms), server.port);
        break;
      }
      case 'remap': {
        const r = await this.d.remap(ms);
        w = { kind, target: r.target, start: r.start, end: r.end, clients: r.clients, detail: r.detail };
        break;
      }
      case 'blackhole': {
        const start = now();
        await this.d.stack.dynamoProxy.cut();
        await sleep(ms);
        await this.d.stack.dynamoProxy.heal(); // the silent sockets are reset, as TCP gives up on them
        w = { kind, target: 'dynamodb (socket)', start, end: now() };
        break;
      }
      case 'failover': {
        if (this.d.stack.cluster !== undefined) {
          w = await this.clusterFailover(ms);
          break;
        }
        const shard = this.d.stack.replicated;
        if (shard === undefined) throw new Error('no replicated shard');
        const start = now();
        const lagMs = Math.min(ms, 500);
        const oldPrimary = shard.primary.port;
        const { movedAt, newPrimary } = await failover(this.d.stack.network, shard, lagMs, 800, this.d.random);
        const name = `shard${this.d.stack.plain.length}`;
        w = await this.answered(
          { kind, target: name, node: name, start, end: movedAt, detail: { lagMs, oldPrimary, newPrimary } },
          this.d.stack.pingPort(name),
        );
        break;
      }
      case 'dynamo': {
        const start = now();
        await this.d.dynamoFaults('errors');
        await sleep(ms);
        await this.d.dynamoFaults('off');
        w = { kind, target: 'dynamodb', start, end: now() };
        break;
      }
      case 'stream': {
        const start = now();
        this.d.feed.pause();
        await sleep(ms);
        this.d.feed.resume();
        w = { kind, target: 'stream consumer', start, end: now() };
        break;
      }
      case 'slow':
        throw new Error('slow is an overlay of the node faults, not a fault of its own');
      case 'migrate': {
        w = await this.migration(ms);
        break;
      }
      case 'partition': {
        const partition = this.d.stack.partition;
        if (partition === undefined) throw new Error('partition: shards mode only');
        const start = now();
        await partition.cut();
        await sleep(ms);
        await partition.heal();
        const name = `shard${this.d.stack.partitionedShard}`;
        w = await this.answered(
          { kind, target: `w0↛${name}`, node: name, clients: ['w0'], address: partition.url, start, end: now() },
          partition.port,
        );
        break;
      }
    }
    this.record(w);
    return [w];
  }

  /**
   * Cluster mode's failover (stack.ts clusterFailover): a random pair's replica stops replicating, its
   * primary serves for up to 0.5 s more, dies, and the replica takes over while writers are in flight.
   * The window is the pair's from the replica's stop to the takeover; the old primary comes back as a
   * replica 1.5 s later (outside the window: it serves no slot by then).
   */
  private async clusterFailover(ms: number): Promise<FaultWindow> {
    const pairs = this.d.stack.cluster as ClusterShard[];
    const pair = pairs[Math.floor(this.d.random() * pairs.length)] as ClusterShard;
    const start = now();
    const lagMs = Math.min(ms, 500);
    const { movedAt, oldPrimary, newPrimary, rejoin } = await clusterFailover(pair, lagMs);
    const w = await this.answered(
      { kind: 'failover', target: pair.name, node: pair.name, start, end: movedAt, detail: { lagMs, oldPrimary, newPrimary } },
      newPrimary,
    );
    await rejoin(1500);
    return w;
  }

  /** Cluster mode: the slots of a few keys of one primary migrated to another, through the slot's time (stack.ts migrateSlots). */
  private async migration(ms: number): Promise<FaultWindow> {
    const pairs = this.d.stack.cluster;
    if (pairs === undefined) throw new Error('migrate: cluster mode only');
    const i = Math.floor(this.d.random() * pairs.length);
    const from = pairs[i] as ClusterShard;
    const to = pairs[(i + 1 + Math.floor(this.d.random() * (pairs.length - 1))) % pairs.length] as ClusterShard;
    const count = 6;
    const start = now();
    // Each slot takes about five pauses: IMPORTING/MIGRATING, its keys, and SETSLOT NODE.
    const result = await migrateSlots(pairs, from, to, count, Math.max(20, Math.round(ms / (count * 5))));
    return { kind: 'migrate', target: `${from.name}→${to.name}`, start, end: now(), detail: { ...result } };
  }

  private record(w: FaultWindow): void {
    this.windows.push(w);
    const answered = w.answeredAt === undefined ? '' : `, answered +${Math.round(w.answeredAt - w.end)} ms`;
    this.d.log(
      `fault ${w.kind.padEnd(9)} ${w.target.padEnd(16)} ${Math.round(w.end - w.start)} ms${answered}${w.detail ? ` ${JSON.stringify(w.detail)}` : ''}`,
    );
  }

  /**
   * Node stalls around the command timeout, repeated through the slot: a random plain shard is
   * stopped for ⅓–1⅓ command timeouts (100–400 ms at the default 300 ms; SIGSTOP: CPU starvation, a slow script, a cold start's slow connect), then
   * continued, then pinged; 0.3–0.8 s later the next. Each stall is a window of its own.
   */
  private async stalls(ms: number): Promise<FaultWindow[]> {
    const out: FaultWindow[] = [];
    const until = now() + ms;
    do {
      const { server, name } = this.shard();
      const t = this.d.commandTimeoutMs;
      const stalledMs = Math.round(between(this.d.random, t / 3, (4 * t) / 3));
      const start = now();
      server.pause();
      await sleep(stalledMs);
      server.resume();
      const w = await this.answered({ kind: 'stall', target: name, node: name, start, end: now(), detail: { stalledMs } }, server.port);
      this.record(w);
      out.push(w);
      await sleep(between(this.d.random, 300, 800));
    } while (now() < until);
    return out;
  }

  /**
   * Memory pressure with a real eviction policy: the shard's keys are held to 30–60 % of the bytes
   * they took when the window began (at least 16 KB), under a policy picked at random
   * (MAXMEMORY_POLICIES, named in the window's target), while the containers keep reading and
   * writing the whole key space; then lifted and the old policy restored. `maxmemory` counts all
   * the node's memory (client buffers that come and go, the Lua VM), so every 100 ms it is set to
   * what the node uses besides its keys plus that cap, the keys' bytes estimated as DBSIZE × the
   * mean `MEMORY USAGE` of up to 20 random keys. Under the volatile-* policies only keys with a TTL
   * are evicted; a node that cannot get under the limit answers writes with OOM errors.
   */
  private async memoryPressure(server: RedisServer, name: string, ms: number): Promise<FaultWindow> {
    const policy = pick(this.d.random, MAXMEMORY_POLICIES);
    const c: Redis = server.client({ maxRetriesPerRequest: 1, commandTimeout: 2000 });
    try {
      const oldPolicy = ((await c.config('GET', 'maxmemory-policy')) as string[])[1] ?? 'noeviction';
      let sampled = 0;
      let sampledBytes = 0;
      for (let i = 0; i < 20; i++) {
        const key = await c.randomkey();
        if (key === null) break;
        const bytes = await c.call('MEMORY', 'USAGE', key);
        if (typeof bytes !== 'number') continue;
        sampled++;
        sampledBytes += bytes;
      }
      const bytesPerKey = sampled > 0 ? sampledBytes / sampled : 512;
      const keysBefore = await c.dbsize();
      const cap = Math.max(16 * 1024, Math.round(keysBefore * bytesPerKey * between(this.d.random, 0.3, 0.6)));
      const before = info(await c.info('stats'), 'evicted_keys');
      const limit = async (): Promise<number> => {
        const used = info(await c.info('memory'), 'used_memory');
        const bytes = Math.max(1, Math.round(used - (await c.dbsize()) * bytesPerKey + cap));
        await c.config('SET', 'maxmemory', String(bytes));
        return bytes;
      };
      const start = now();
      await c.config('SET', 'maxmemory-policy', policy);
      const first = await limit();
      const until = start + ms;
      while (now() < until) {
        await sleep(Math.min(100, Math.max(0, until - now())));
        await limit().catch(() => {});
      }
      const keysAtEnd = await c.dbsize();
      await c.config('SET', 'maxmemory', '0');
      await c.config('SET', 'maxmemory-policy', oldPolicy);
      const end = now();
      const evicted = info(await c.info('stats'), 'evicted_keys') - before;
      return {
        kind: 'maxmemory',
        target: `${name} ${policy}`,
        node: name,
        start,
        end,
        detail: {
          policy,
          keysBefore,
          bytesPerKey: Math.round(bytesPerKey),
          keyBytesCap: cap,
          firstMaxmemory: first,
          evictedKeys: evicted,
          keysAtEnd,
        },
      };
    } finally {
      c.disconnect();
    }
  }

  /**
   * maxmemory a little above what the node needs for itself, allkeys-lru, and another tenant's large
   * values written meanwhile: every entry, lease and fence on the shard is evicted, repeatedly,
   * while clients fill and write (R4).
   */
  private async evictionStorm(server: RedisServer, name: string, ms: number): Promise<FaultWindow> {
    const c: Redis = server.client({ maxRetriesPerRequest: 1, commandTimeout: 2000 });
    try {
      const mem = await c.info('memory');
      const before = info(await c.info('stats'), 'evicted_keys');
      const limit = info(mem, 'used_memory_overhead') + 256 * 1024;
      const start = now();
      await c.config('SET', 'maxmemory-policy', 'allkeys-lru');
      await c.config('SET', 'maxmemory', String(limit));
      const junk = 'j'.repeat(8 * 1024);
      // Cluster mode: the other tenant's keys must live in a slot of this primary (a hash tag of one).
      const prefix = this.d.stack.cluster === undefined ? '__storm:' : `__storm:{${tagForSlot(await ownSlot(c, server.port))}}:`;
      let n = 0;
      const until = start + ms;
      while (now() < until) {
        await c.set(`${prefix}${n++}`, junk).catch(() => {});
        await sleep(15);
      }
      await c.config('SET', 'maxmemory', '0');
      const end = now();
      const evicted = info(await c.info('stats'), 'evicted_keys') - before;
      return { kind: 'evict', target: name, node: name, start, end, detail: { maxmemory: limit, evictedKeys: evicted, junkWrites: n } };
    } finally {
      c.disconnect();
    }
  }
}

/** A slot the cluster node on `port` owns now (CLUSTER SLOTS). */
async function ownSlot(c: Redis, port: number): Promise<number> {
  const ranges = (await c.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
  const mine = ranges.find((r) => r[2][1] === port);
  if (mine === undefined) throw new Error(`the node on ${port} owns no slot`);
  return mine[0];
}

/** How long each fault lasts, as a share of its slot in the schedule. */
export function faultDuration(kind: FaultKind, slotMs: number, random: Rng): number {
  const base = between(random, 0.3, 0.5) * slotMs;
  if (kind === 'failover') return Math.min(base, 500);
  // Stalls and a second shard map need the slot to show anything: several stalls; readers on both maps.
  if (kind === 'stall' || kind === 'remap') return between(random, 0.5, 0.6) * slotMs;
  return base;
}
