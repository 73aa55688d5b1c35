import { Cluster, Command, Redis, type RedisOptions } from 'ioredis';
import { errorMessage } from '../errors.ts';
import { logger, type LogKeys } from '../log.ts';
import { DirtyKeys } from './dirty.ts';
import { installScripts, sealKey, SETTLE_KEY, type ScriptedClient } from './scripts.ts';
import { randomToken } from './tokens.ts';
import { BudgetSpent, DeadlineQueue, within } from './deadline.ts';

export type NodeStatus = 'up' | 'down' | 'starting';

export interface NodeSettings {
  checkIntervalMs: number;
  startCycles: number;
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  dirtyKeysMax: number;
  authToken?: string | undefined;
  authUser?: string | undefined;
  tlsCa?: string | undefined;
  logKeys?: LogKeys;
  /** Test seam: the state machine's clock. */
  clock?: () => number;
  /** How long a new epoch settles: the writers' fence time (set by the protocol's owner). */
  settleMs?: number;
}

export interface NodeHealth {
  id: string;
  address: string;
  status: NodeStatus;
  since: string;
  dirtyKeys: number;
}

/**
 * `redis://host:port/db` without user or password: safe for logs, errors and /health. Text that is
 * not a URL (a malformed setting) keeps no user information either: everything before its last `@`
 * (after the scheme) is dropped, since it cannot be parsed to tell the user from the password.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    const at = url.lastIndexOf('@');
    if (at === -1) return url;
    const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? '';
    return `${scheme}…@${url.slice(at + 1)}`;
  }
  const db = u.pathname && u.pathname !== '/' ? u.pathname : '';
  return `${u.protocol}//${u.hostname}:${u.port || '6379'}${db}`;
}

/**
 * Fail fast, always: a dead or hung node must cost a request at most the command timeout (G3).
 * No offline queue (a command while disconnected fails at once), every call bounded by its caller's
 * deadline (deadline.ts), reconnection in the background (the health state machine, not the
 * client, decides when the node is trusted).
 *
 * Credentials, as the README says: the URL's user and password win, and a part the URL lacks comes
 * from CACHE_AUTH_USER / CACHE_AUTH_TOKEN, so `rediss://default@host` with a token sends
 * `AUTH default <token>`. `rediss://` turns TLS on, with CACHE_TLS_CA_FILE's CA if given.
 */
export function clientOptions(settings: NodeSettings, url: URL): RedisOptions {
  const username = url.username ? decodeURIComponent(url.username) : settings.authUser;
  const password = url.password ? decodeURIComponent(url.password) : settings.authToken;
  return {
    ...(password ? { password } : {}),
    ...(username ? { username } : {}),
    ...(url.protocol === 'rediss:' ? { tls: settings.tlsCa ? { ca: settings.tlsCa } : {} } : {}),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: settings.connectTimeoutMs,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    // One write per event-loop turn: concurrent requests share a round trip; a batch is one pipeline per node.
    enableAutoPipelining: true,
    autoResubscribe: false,
    lazyConnect: false,
  };
}

/** The URL ioredis is given: credentials removed, since ioredis lets a URL's empty password override ours. */
function withoutCredentials(url: URL): string {
  const bare = new URL(url.href);
  bare.username = '';
  bare.password = '';
  return bare.href;
}

/** Distinct connection errors a node logs (each once): enough to see why, bounded so logs cannot flood. */
const MAX_LOGGED_CONNECTION_ERRORS = 20;

function clusterSeeds(urls: string[]): { host: string; port: number }[] {
  return urls.map((u) => {
    const p = new URL(u);
    return { host: p.hostname, port: Number(p.port || 6379) };
  });
}

/**
 * One Redis node (or one Redis Cluster) and the seed's health state machine:
 * up → down on any error → probed once per check interval → starting (write-only) for
 * startCycles × checkInterval → up. Lives in module scope, so it survives warm invocations.
 */
export class CacheNode {
  readonly id: string;
  readonly address: string;
  readonly client: ScriptedClient;
  readonly dirty: DirtyKeys;
  readonly isCluster: boolean;
  private readonly settings: NodeSettings;
  private readonly clock: () => number;
  private state: NodeStatus = 'up';
  private since: number;
  private lastCheck = 0;
  private runId: string | undefined;
  private verified = false;
  private verifying: Promise<boolean> | undefined;
  /** The probe in flight, if any; tests await it. */
  probing: Promise<boolean> | undefined;
  /** The hit path's reads in flight and their deadlines (see read). */
  private readonly reads: DeadlineQueue;
  /** The socket held corked until the end of this event-loop turn (see read), if any. */
  private corked: { uncork(): void } | undefined;

  constructor(id: string, urls: string[], settings: NodeSettings, kind: 'node' | 'cluster' = 'node') {
    this.id = id;
    this.settings = settings;
    this.clock = settings.clock ?? Date.now;
    this.since = this.clock();
    this.isCluster = kind === 'cluster';
    this.address = urls.map(redactUrl).join(',');
    this.dirty = new DirtyKeys(this.address, settings.dirtyKeysMax, settings.logKeys ?? 'plain');
    this.reads = new DeadlineQueue(this.address);
    const first = urls[0];
    if (first === undefined) throw new Error('a cache node needs a URL');
    let client: Redis | Cluster;
    const u = new URL(first);
    const opts = clientOptions(settings, u);
    if (this.isCluster) {
      client = new Cluster(clusterSeeds(urls), {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        enableReadyCheck: true,
        slotsRefreshTimeout: settings.connectTimeoutMs,
        clusterRetryStrategy: opts.retryStrategy,
        // ElastiCache hands out TLS certificates for the configuration endpoint's name: keep it.
        dnsLookup: (address, callback) => callback(null, address),
        // Per-node options: the offline queue and retries are the Cluster's to manage (ioredis keeps
        // its internal node queues on; setting them here breaks the slots refresh).
        redisOptions: { connectTimeout: opts.connectTimeout, username: opts.username, password: opts.password, tls: opts.tls },
      });
    } else {
      client = new Redis(withoutCredentials(u), opts);
    }
    this.client = installScripts(client);
    this.client.on('ready', () => {
      void this.verify();
    });
    this.client.on('close', () => {
      this.verified = false;
    });
    // Errors surface on the commands that hit them (an unhandled 'error' event would crash the
    // process), but only the client sees why a connection fails (a TLS certificate refused, AUTH
    // refused): log each distinct reason once per node, without secrets, so reconnects do not flood.
    const seen = new Set<string>();
    const secrets = [opts.password, settings.authToken].filter((s): s is string => !!s);
    const report = (err: unknown): void => {
      let reason = errorMessage(err);
      for (const secret of secrets) reason = reason.split(secret).join('…');
      if (seen.has(reason) || seen.size >= MAX_LOGGED_CONNECTION_ERRORS) return;
      seen.add(reason);
      logger.warn('CACHE_NODE_CONNECTION_ERROR', { cacheNode: this.address, error: reason });
    };
    this.client.on('error', report);
    if (this.isCluster) this.client.on('node error', report);
  }

  /** The settle marker scripts check for `key`: the node's, or none (the key itself) in cluster mode. */
  settleKeyFor(key: string): string {
    return this.isCluster ? key : SETTLE_KEY;
  }

  get status(): NodeStatus {
    this.refresh();
    return this.state;
  }

  /** Reads may trust the node's entries now. Synchronous, so the hit path pays no extra await. */
  get readable(): boolean {
    this.refresh();
    return this.state === 'up' && this.verified && this.client.status === 'ready';
  }

  /** Invalidations and fills may be sent (up or starting). */
  get writable(): boolean {
    this.refresh();
    return this.state !== 'down';
  }

  /**
   * Waits (at most the command timeout) for a connection that is still being made, as on a cold
   * start; true when commands can be sent.
   */
  async connected(): Promise<boolean> {
    if (this.verified && this.client.status === 'ready') return true;
    if (this.state === 'down') return false;
    if (this.client.status !== 'ready') await this.nextReady();
    if (this.verifying) await this.verifying;
    return this.verified && this.client.status === 'ready';
  }

  /** One wait per node for the connection, however many callers wait on it (bounded by the command timeout). */
  private readyWait: Promise<void> | undefined;

  private nextReady(): Promise<void> {
    this.readyWait ??= new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.client.off('ready', done);
        this.readyWait = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.settings.commandTimeoutMs);
      this.client.once('ready', done);
    });
    return this.readyWait;
  }

  /** Any failed command: the node is down until a probe says otherwise. */
  fail(err: unknown, during: string): void {
    if (this.state === 'down') return;
    this.setState('down');
    this.lastCheck = this.clock();
    logger.error('CACHE_NODE_DOWN', { cacheNode: this.address, during, error: errorMessage(err) });
  }

  /**
   * An active check for /health: a function that only answers health questions sends no other
   * command, so it would never see a node fail. Bounded by the command timeout.
   */
  async check(): Promise<void> {
    this.refresh();
    if (this.state === 'down') {
      await this.probing;
      return;
    }
    try {
      if (!(await this.connected())) throw new Error(`not connected (${this.client.status})`);
      await this.bounded(() => this.client.ping());
    } catch (err) {
      this.fail(err, 'health-check');
    }
  }

  health(): NodeHealth {
    const status = this.status;
    return { id: this.id, address: this.address, status, since: new Date(this.since).toISOString(), dirtyKeys: this.dirty.size };
  }

  /** Time-driven transitions; called on every access, cheap when nothing is due. */
  refresh(): void {
    const now = this.clock();
    if (this.state === 'starting') {
      if (now - this.since >= this.settings.startCycles * this.settings.checkIntervalMs) this.setState('up');
    } else if (this.state === 'down' && this.probing === undefined && now - this.lastCheck >= this.settings.checkIntervalMs) {
      this.probing = this.probe().finally(() => {
        this.probing = undefined;
      });
    }
  }

  /**
   * For paths that must deliver (stream invalidations, retried by Lambda): probe a down node now
   * instead of after the check interval, at most once a second.
   */
  async probeNow(): Promise<void> {
    if (this.state !== 'down') return;
    if (this.probing === undefined && this.clock() - this.lastCheck >= Math.min(1000, this.settings.checkIntervalMs)) {
      this.probing = this.probe().finally(() => {
        this.probing = undefined;
      });
    }
    await this.probing;
  }

  /**
   * The check of a down node: reachable, epoch verified (R9), its dirty keys repaired (R6), then
   * `starting`. Any failure leaves it down until the next interval.
   */
  async probe(): Promise<boolean> {
    this.lastCheck = this.clock();
    try {
      if (this.client.status !== 'ready') throw new Error(`not connected (${this.client.status})`);
      if (!(await this.verify())) return false;
      await this.repairDirty();
      this.setState(this.settings.startCycles > 0 ? 'starting' : 'up');
      return true;
    } catch (err) {
      logger.warn('CACHE_NODE_PROBE_FAILED', { cacheNode: this.address, error: errorMessage(err) });
      return false;
    }
  }

  /**
   * Learns the server's run_id; a run_id this client has not verified is sealed (SEAL script): if
   * nobody sealed that epoch yet, whatever data the node came up with is flushed. Cluster mode
   * relies on ElastiCache's own failover handling (see ARCHITECTURE.md).
   */
  private verify(): Promise<boolean> {
    // One verification at a time: a probe and a reconnection may both ask for one.
    this.verifying ??= this.verifyEpoch().finally(() => {
      this.verifying = undefined;
    });
    return this.verifying;
  }

  private async verifyEpoch(): Promise<boolean> {
    try {
      if (this.isCluster) {
        await this.bounded(() => this.client.ping());
      } else {
        const info = await this.bounded(() => (this.client as Redis).info('server'));
        const runId = /run_id:([0-9a-f]+)/.exec(info)?.[1];
        if (!runId) throw new Error('INFO server carries no run_id');
        const previousRunId = this.runId;
        if (runId !== previousRunId) {
          const flushed = await this.bounded(() =>
            this.client.wtSeal(sealKey(runId), SETTLE_KEY, this.settings.settleMs ?? 60_000, previousRunId === undefined ? '0' : '1'),
          );
          if (previousRunId !== undefined || flushed > 0) {
            logger.warn('CACHE_NODE_NEW_EPOCH', { cacheNode: this.address, previousRunId, runId, flushedKeys: Math.max(flushed, 0) });
          }
          this.runId = runId;
        }
      }
      this.verified = true;
      return true;
    } catch (err) {
      this.verified = false;
      this.fail(err, 'verify');
      return false;
    }
  }

  private async repairDirty(): Promise<void> {
    const todo = this.dirty.snapshot();
    if (todo.flush) {
      const client = this.client;
      if (client instanceof Cluster) await this.bounded(() => Promise.all(client.nodes('master').map((n) => n.flushdb())));
      else await this.bounded(() => client.flushdb());
    } else {
      await Promise.all(todo.keys.map((k) => this.bounded(() => this.client.wtInvalidate(k, randomToken()))));
    }
    this.dirty.clear(todo);
    if (todo.keys.length > 0 || todo.flush) {
      logger.info('CACHE_DIRTY_REPAIRED', { cacheNode: this.address, keys: todo.keys.length, flushed: todo.flush });
    }
  }

  /**
   * HGET `key` `field`, bounded by `deadline` (G3): the hit path, so the cheapest way ioredis offers.
   * On a single node the command goes straight to the connection (no auto-pipeline: no pipeline,
   * no promise and callback around each command), and the socket is corked until the end of this
   * event-loop turn, so the reads of concurrent requests still leave in one write, as auto-pipelining
   * sends them. The deadline is kept by the node's DeadlineQueue (one timer for all reads in flight,
   * not one per call). As with any command: no offline queue (a read while disconnected fails at
   * once). A Cluster routes by slot itself: its reads go through `within`.
   */
  read(key: string, field: string, deadline: number): Promise<string | null> {
    const client = this.client;
    if (client instanceof Cluster) return within(this.address, deadline, () => client.hget(key, field));
    const ms = deadline - Date.now();
    if (ms <= 0) return Promise.reject(new BudgetSpent());
    const stream = client.stream as Redis['stream'] | undefined;
    if (this.corked === undefined && stream !== undefined && client.status === 'ready') {
      stream.cork();
      this.corked = stream;
      setImmediate(this.uncork);
    }
    const command = new Command('hget', [key, field], { replyEncoding: 'utf8' });
    client.sendCommand(command);
    this.reads.add(command, deadline, ms);
    return command.promise as Promise<string | null>;
  }

  private readonly uncork = (): void => {
    const stream = this.corked;
    this.corked = undefined;
    stream?.uncork();
  };

  /** A call of the node's own (checks, epochs, repairs), bounded by the command timeout. */
  private bounded<T>(op: () => Promise<T>): Promise<T> {
    return within(this.address, Date.now() + this.settings.commandTimeoutMs, op);
  }

  private setState(next: NodeStatus): void {
    if (next === this.state) return;
    this.state = next;
    this.since = this.clock();
    logger.info('CACHE_NODE_STATUS', { cacheNode: this.address, status: next });
  }

  async close(): Promise<void> {
    this.client.disconnect();
    this.reads.close();
  }
}
