/**
 * Test helper: real `redis-server` child processes on free ports (never 6379),
 * bound to 127.0.0.1, with no persistence, each in its own temp dir.
 *
 *   const srv = await RedisServer.start({ maxmemory: '2mb', maxmemoryPolicy: 'allkeys-lru' });
 *   ...
 *   await srv.stop();
 *
 * Every spawned process is tracked in a module-level registry and SIGKILLed when
 * the Node process exits (or gets SIGINT/SIGTERM/SIGHUP), so no test leaves a
 * redis-server behind.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { clusterEpoch, clusterSealKey, sealKey } from '../../lib/cache/scripts.ts';
import { tagForSlot } from '../../lib/cache/slots.ts';
import { freePort } from './ports.ts';
import { hasExited, terminate, waitForExit } from './processes.ts';

const HOST = '127.0.0.1';
const DEFAULT_START_TIMEOUT_MS = 15_000;

export interface RedisServerOptions {
  /** The port to listen on (the local stack's REDIS_PORTS); default: a free one. */
  port?: number;
  /** e.g. '2mb' → `--maxmemory 2mb` */
  maxmemory?: string;
  /** e.g. 'allkeys-lru' → `--maxmemory-policy allkeys-lru` */
  maxmemoryPolicy?: string;
  /** requirepass: clients (and this helper's probes) must AUTH. */
  password?: string;
  /** Extra raw command-line arguments appended as-is, e.g. ['--hz', '100']. */
  extraArgs?: string[];
  /** How long to wait for PING to answer after spawning (default 15 s). */
  startTimeoutMs?: number;
}

export interface RedisCluster {
  /** Every server, primaries and replicas, in the order they were started. */
  servers: RedisServer[];
  /** The servers that were primaries when the cluster was made. */
  primaries: RedisServer[];
  /** The replica of each primary (same index), when the cluster was made with replicas. */
  replicas: RedisServer[];
  /** redis://127.0.0.1:PORT for every node */
  urls: string[];
  /** { host, port } for every node, handy for `new Cluster(nodes)` */
  nodes: { host: string; port: number }[];
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Registry: kill everything we spawned when the process goes away.
// ---------------------------------------------------------------------------

const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let hooksInstalled = false;

function killAllSync(): void {
  for (const child of liveChildren) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveChildren.clear();
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  liveDirs.clear();
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllSync();
      process.removeListener(sig, onSignal);
      // If nobody else handles the signal, re-raise it to get the default behaviour.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/**
 * A forgotten server must not keep the test process alive (it would hang `node --test`
 * forever); the exit hook kills it instead. So unref the child and its pipes.
 */
function unrefChild(child: ChildProcess): void {
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();
}

// ---------------------------------------------------------------------------
// Small client helpers
// ---------------------------------------------------------------------------

/** requirepass of the servers that have one, by port, so the helper's own probes can AUTH. */
const passwords = new Map<number, string>();

/** A short-lived probe client: no retries, no offline queue; always disconnected by the caller. */
function probeClient(port: number, connectTimeout = 1000): Redis {
  const c = new Redis({
    host: HOST,
    port,
    password: passwords.get(port),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout,
    commandTimeout: 5000,
  });
  c.on('error', () => {
    /* reported through the command promises */
  });
  return c;
}

/**
 * Seals a server's first epoch without a settle. The library settles every epoch it seals, since it
 * cannot tell a first start from a restart that lost its data (lib/cache/scripts.ts SEAL); whoever
 * just started the process knows it is a first start, empty, with no writer in flight.
 */
export async function sealFirstStart(c: Redis): Promise<void> {
  const runId = infoField(await c.info('server'), 'run_id');
  if (!runId) throw new Error('no run_id in INFO server');
  await c.set(sealKey(runId), '0:0', 'NX');
}

async function withProbe<T>(port: number, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = probeClient(port);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

function infoField(info: string, field: string): string | undefined {
  const m = new RegExp(`^${field}:(.*)$`, 'm').exec(info);
  return m?.[1]?.trim();
}

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const detail = lastErr instanceof Error ? ` (last error: ${lastErr.message})` : '';
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------
// RedisServer
// ---------------------------------------------------------------------------

export class RedisServer {
  readonly port: number;
  readonly dir: string;
  private child: ChildProcess;
  private output = '';
  private extraArgs: string[];
  private readonly startTimeoutMs: number;
  private stopped = false;

  private constructor(port: number, dir: string, extraArgs: string[], startTimeoutMs: number) {
    this.port = port;
    this.dir = dir;
    this.extraArgs = extraArgs;
    this.startTimeoutMs = startTimeoutMs;
    this.child = this.spawnProcess();
  }

  get url(): string {
    return `redis://${HOST}:${this.port}`;
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error('redis-server has no pid (spawn failed?)');
    return pid;
  }

  /** Last lines written by redis-server (its log goes to stdout). Useful in failure messages. */
  get log(): string {
    return this.output;
  }

  /** A new server, empty, its epoch sealed as a first start (see sealFirstStart). */
  static async start(opts: RedisServerOptions = {}): Promise<RedisServer> {
    const server = await RedisServer.startWith(opts, []);
    await withProbe(server.port, sealFirstStart);
    return server;
  }

  /** Starts a replica of `primary` and waits for `master_link_status:up`. */
  static async startReplicaOf(primary: { port: number }, opts: RedisServerOptions = {}): Promise<RedisServer> {
    const replica = await RedisServer.startWith(opts, ['--replicaof', HOST, String(primary.port)]);
    try {
      await replica.waitForReplicationLink();
    } catch (err) {
      await replica.stop();
      throw err;
    }
    return replica;
  }

  /**
   * Starts cluster-enabled servers, creates a cluster of `n` primaries, each with `replicas` replicas
   * (`redis-cli --cluster create --cluster-replicas`), and waits for `cluster_state:ok` on every node
   * and, with replicas, for every replica's link to its primary. `nodeTimeoutMs` is the cluster's
   * `cluster-node-timeout` (how long a silent primary stays a primary before its replica takes over).
   */
  static async startCluster(n = 3, opts: RedisServerOptions & { replicas?: number; nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
    if (n < 3) throw new Error('redis-cli --cluster create needs at least 3 primaries');
    const replicasEach = opts.replicas ?? 0;
    const servers: RedisServer[] = [];
    const stopAll = async (): Promise<void> => {
      await Promise.all(servers.map((s) => s.stop()));
    };
    const primaries: RedisServer[] = [];
    const replicas: RedisServer[] = [];
    try {
      for (let i = 0; i < n * (1 + replicasEach); i++) {
        // The cluster bus defaults to port+10000, which may be above 65535 for ephemeral
        // ports, so give it its own free port.
        const busPort = await freePort();
        servers.push(
          await RedisServer.startWith(opts, (dir) => [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, 'nodes.conf'),
            '--cluster-node-timeout',
            String(opts.nodeTimeoutMs ?? 2000),
            // As ElastiCache sets it: a primary that is away costs only its own slots.
            '--cluster-require-full-coverage',
            'no',
            '--cluster-port',
            String(busPort),
          ]),
        );
      }
      await new Promise<void>((resolve, reject) => {
        execFile(
          'redis-cli',
          ['--cluster', 'create', ...servers.map((s) => `${HOST}:${s.port}`), '--cluster-replicas', String(replicasEach), '--cluster-yes'],
          { timeout: 60_000 },
          (err, stdout, stderr) => {
            if (err) reject(new Error(`redis-cli --cluster create failed: ${err.message}\n${stdout}\n${stderr}`));
            else resolve();
          },
        );
      });
      await Promise.all(
        servers.map((s) =>
          waitUntil(
            `cluster_state:ok on ${s.url}`,
            30_000,
            () => withProbe(s.port, async (c) => infoField(String(await c.call('CLUSTER', 'INFO')), 'cluster_state') === 'ok'),
            100,
          ),
        ),
      );
      // Which server redis-cli made a replica of which primary.
      const roles = await Promise.all(servers.map((s) => withProbe(s.port, (c) => c.info('replication'))));
      servers.forEach((s, i) => {
        if (infoField(roles[i] ?? '', 'role') === 'master') primaries.push(s);
      });
      for (const primary of primaries) {
        const i = servers.findIndex((_, j) => infoField(roles[j] ?? '', 'master_port') === String(primary.port));
        if (i >= 0) replicas.push(servers[i] as RedisServer);
      }
      // Each primary's first epoch sealed without a settle, as start() does (sealFirstStart).
      const ranges = (await withProbe(primaries[0]!.port, (c) => c.call('CLUSTER', 'SLOTS'))) as [number, number, [string, number]][];
      for (const primary of primaries) {
        const lowest = Math.min(...ranges.filter((r) => r[2][1] === primary.port).map((r) => r[0]));
        await withProbe(primary.port, async (c) => {
          const info = await c.info();
          const epoch = clusterEpoch(infoField(info, 'run_id') ?? '', infoField(info, 'master_replid') ?? '');
          await c.set(clusterSealKey(tagForSlot(lowest), epoch), '0:0', 'NX');
        });
      }
      if (replicasEach > 0) {
        if (replicas.length !== primaries.length)
          throw new Error(`expected a replica per primary, found ${replicas.length} for ${primaries.length}`);
        await Promise.all(replicas.map((r) => r.waitForReplicationLink()));
      }
    } catch (err) {
      await stopAll();
      throw err;
    }
    return {
      servers,
      primaries,
      replicas,
      urls: servers.map((s) => s.url),
      nodes: servers.map((s) => ({ host: HOST, port: s.port })),
      stop: stopAll,
    };
  }

  private static async startWith(opts: RedisServerOptions, roleArgs: string[] | ((dir: string) => string[])): Promise<RedisServer> {
    installHooks();
    const args: string[] = [];
    if (opts.maxmemory !== undefined) args.push('--maxmemory', opts.maxmemory);
    if (opts.maxmemoryPolicy !== undefined) args.push('--maxmemory-policy', opts.maxmemoryPolicy);
    if (opts.password !== undefined) args.push('--requirepass', opts.password);
    args.push(...(opts.extraArgs ?? []));
    const timeout = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;

    // A free port can be grabbed by someone else between probing and binding: retry a few times.
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = opts.port ?? (await freePort());
      const dir = mkdtempSync(join(tmpdir(), `redis-test-${port}-`));
      liveDirs.add(dir);
      const role = typeof roleArgs === 'function' ? roleArgs(dir) : roleArgs;
      if (opts.password !== undefined) passwords.set(port, opts.password);
      const server = new RedisServer(port, dir, [...role, ...args], timeout);
      try {
        await server.waitReady();
        return server;
      } catch (err) {
        lastErr = err;
        const addrInUse = /address already in use/i.test(server.output);
        await server.stop();
        if (addrInUse && opts.port !== undefined) throw new Error(`redis-server: port ${opts.port} is already in use`);
        if (!addrInUse) throw err;
      }
    }
    throw lastErr;
  }

  private spawnProcess(): ChildProcess {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      this.dir,
      '--dbfilename',
      'dump.rdb',
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      // Default is 5 s, which makes every replica's first sync take 5 s.
      '--repl-diskless-sync-delay',
      '0',
      ...this.extraArgs,
    ];
    this.output = '';
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    liveChildren.add(child);
    const collect = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString()).slice(-8000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    child.on('error', (err) => {
      this.output += `\nspawn error: ${err.message}`;
    });
    child.once('exit', () => liveChildren.delete(child));
    unrefChild(child);
    return child;
  }

  private async waitReady(): Promise<void> {
    const child = this.child;
    const deadline = Date.now() + this.startTimeoutMs;
    for (;;) {
      if (hasExited(child)) {
        throw new Error(
          `redis-server on port ${this.port} exited early (code ${child.exitCode}, signal ${child.signalCode}):\n${this.output}`,
        );
      }
      try {
        const pong = await withProbe(this.port, (c) => c.ping());
        if (pong === 'PONG') return;
      } catch {
        /* not up yet (or still LOADING) */
      }
      if (Date.now() > deadline) {
        throw new Error(`redis-server on port ${this.port} did not answer PING within ${this.startTimeoutMs} ms:\n${this.output}`);
      }
      await sleep(25);
    }
  }

  private async waitForReplicationLink(): Promise<void> {
    await waitUntil(`master_link_status:up on ${this.url}`, 30_000, () =>
      withProbe(this.port, async (c) => infoField(await c.info('replication'), 'master_link_status') === 'up'),
    );
  }

  private assertNotStopped(): void {
    if (this.stopped) throw new Error(`RedisServer on port ${this.port} was stopped`);
  }

  /** SIGKILL the process and wait until it is gone. */
  async kill(): Promise<void> {
    if (!hasExited(this.child)) this.child.kill('SIGKILL');
    await waitForExit(this.child);
  }

  /** SIGSTOP: the process keeps its socket but stops answering. */
  pause(): void {
    this.assertNotStopped();
    if (!hasExited(this.child)) this.child.kill('SIGSTOP');
  }

  /** SIGCONT after pause(). */
  resume(): void {
    if (!hasExited(this.child)) this.child.kill('SIGCONT');
  }

  /** Graceful shutdown (SIGTERM, SIGKILL after 5 s), then removes the temp dir. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const child = this.child;
    if (!hasExited(child)) child.kill('SIGCONT'); // a paused process would not act on SIGTERM
    await terminate(child);
    rmSync(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }

  /**
   * Restarts on the same port.
   * keepData=false: SIGKILL and start empty.
   * keepData=true: SAVE, SIGKILL, start again loading dump.rdb (data survives, run_id changes).
   * Waits until PING answers (for a replica it does not wait for the replication link).
   */
  async restart({ keepData }: { keepData: boolean }): Promise<void> {
    this.assertNotStopped();
    this.resume();
    if (keepData) {
      await withProbe(this.port, (c) => c.save());
    }
    await this.kill();
    if (!keepData) {
      rmSync(join(this.dir, 'dump.rdb'), { force: true });
    }
    this.child = this.spawnProcess();
    await this.waitReady();
  }

  /** SAVE now: a later `startAgain()` after `kill()` comes back with this data (and a new run_id). */
  async save(): Promise<void> {
    await withProbe(this.port, (c) => c.save());
  }

  /** After `kill()`: start on the same port, loading the last `save()` if there was one. */
  async startAgain(): Promise<void> {
    this.assertNotStopped();
    this.child = this.spawnProcess();
    await this.waitReady();
  }

  /** REPLICAOF NO ONE; later restarts start this server as a primary too. */
  async promote(): Promise<void> {
    this.assertNotStopped();
    await withProbe(this.port, (c) => c.call('REPLICAOF', 'NO', 'ONE'));
    const i = this.extraArgs.indexOf('--replicaof');
    if (i >= 0) this.extraArgs.splice(i, 3);
    await waitUntil(`role:master on ${this.url}`, 10_000, () =>
      withProbe(this.port, async (c) => infoField(await c.info('replication'), 'role') === 'master'),
    );
  }

  /** run_id from INFO server (changes on every process start). */
  async runId(): Promise<string> {
    const info = await withProbe(this.port, (c) => c.info('server'));
    const id = infoField(info, 'run_id');
    if (!id) throw new Error(`no run_id in INFO server of ${this.url}`);
    return id;
  }

  async dbsize(): Promise<number> {
    return withProbe(this.port, (c) => c.dbsize());
  }

  /**
   * A fresh ioredis client connected to this server; the caller must close it
   * (`quit()`/`disconnect()`). A no-op 'error' listener is attached so that killing
   * the server in a test does not spam the log; add your own listener if you care.
   */
  client(opts: RedisOptions = {}): Redis {
    const c = new Redis({ host: HOST, port: this.port, password: passwords.get(this.port), ...opts });
    c.on('error', () => {});
    return c;
  }
}
