/**
 * The nemesis: injects one fault at a time and records its window (when it started, when it was
 * lifted). Node faults pick a plain shard at random; the failover fault uses the replicated shard;
 * the partition cuts client container w0 from one shard; DynamoDB faults are switched on in every
 * container's SDK middleware; the stream fault pauses the Streams consumer.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { StreamFeed } from '../infra/local/stream-feed.ts';
import type { RedisServer } from '../infra/local/redis-server.ts';
import { failover, type Stack } from './stack.ts';
import { CACHE_FAULTS, type DynamoFaultMode, type FaultKind, type FaultWindow } from './history.ts';
import { between, now, sleep, type Rng } from './rng.ts';

export interface NemesisDeps {
  stack: Stack;
  feed: StreamFeed;
  /** Switches injected DynamoDB faults on or off in every client container. */
  dynamoFaults: (mode: DynamoFaultMode) => Promise<void>;
  /** Overlay DynamoDB latency spikes on every node fault (the `slow` fault). */
  slowOverlay: boolean;
  random: Rng;
  log: (m: string) => void;
}

function info(text: string, field: string): number {
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

export class Nemesis {
  readonly windows: FaultWindow[] = [];

  constructor(private readonly d: NemesisDeps) {}

  private shard(): { server: RedisServer; name: string } {
    const i = Math.floor(this.d.random() * this.d.stack.plain.length);
    return { server: this.d.stack.plain[i] as RedisServer, name: `shard${i}` };
  }

  /** Injects `kind` for about `durationMs` and returns when it has been lifted. */
  async inject(kind: FaultKind, durationMs: number): Promise<FaultWindow> {
    const overlay = this.d.slowOverlay && CACHE_FAULTS.has(kind);
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

  private async injectNow(kind: FaultKind, durationMs: number): Promise<FaultWindow> {
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
        w = { kind, target: name, start, end: now(), detail: { downMs: down } };
        break;
      }
      case 'hang': {
        const { server, name } = this.shard();
        const start = now();
        server.pause();
        await sleep(ms);
        server.resume();
        w = { kind, target: name, start, end: now(), detail: { stoppedMs: ms } };
        break;
      }
      case 'restart': {
        const { server, name } = this.shard();
        await server.save();
        const start = now();
        const down = this.downtime(ms);
        await server.kill();
        await sleep(down);
        await server.startAgain(); // loads the dump: the old entries, a new run_id
        w = { kind, target: name, start, end: now(), detail: { downMs: down } };
        break;
      }
      case 'evict': {
        const { server, name } = this.shard();
        w = await this.evictionStorm(server, name, ms);
        break;
      }
      case 'failover': {
        const shard = this.d.stack.replicated;
        const start = now();
        const lagMs = Math.min(ms, 500);
        const oldPrimary = shard.primary.port;
        const { movedAt, newPrimary } = await failover(this.d.stack.network, shard, lagMs, 800, this.d.random);
        w = { kind, target: `shard${this.d.stack.plain.length}`, start, end: movedAt, detail: { lagMs, oldPrimary, newPrimary } };
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
      case 'partition': {
        const start = now();
        await this.d.stack.partition.cut();
        await sleep(ms);
        await this.d.stack.partition.heal();
        w = { kind, target: `w0↛shard${this.d.stack.partitionedShard}`, start, end: now() };
        break;
      }
    }
    this.windows.push(w);
    this.d.log(
      `fault ${w.kind.padEnd(9)} ${w.target.padEnd(16)} ${Math.round(w.end - w.start)} ms${w.detail ? ` ${JSON.stringify(w.detail)}` : ''}`,
    );
    return w;
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
      let n = 0;
      const until = start + ms;
      while (now() < until) {
        await c.set(`__storm:${n++}`, junk).catch(() => {});
        await sleep(15);
      }
      await c.config('SET', 'maxmemory', '0');
      const end = now();
      const evicted = info(await c.info('stats'), 'evicted_keys') - before;
      return { kind: 'evict', target: name, start, end, detail: { maxmemory: limit, evictedKeys: evicted, junkWrites: n } };
    } finally {
      c.disconnect();
    }
  }
}

/** How long each fault lasts, as a share of its slot in the schedule. */
export function faultDuration(kind: FaultKind, slotMs: number, random: Rng): number {
  const base = between(random, 0.3, 0.5) * slotMs;
  return kind === 'failover' ? Math.min(base, 500) : base;
}
