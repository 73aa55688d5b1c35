/**
 * The run's network: every proxy (partition, replication links, per-container endpoints of the
 * replicated shard) lives in a thread of its own, so that the harness's own work (the stream feed,
 * the out-of-band writer, garbage collection) never delays a byte between a client and a node —
 * a delay the clients would see as a slow node. Loaded by boot.mjs as a worker thread; `Network` is
 * its handle in the harness.
 */
import net from 'node:net';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { TcpProxy as MovableEndpoint } from '../infra/local/tcp-proxy.ts';
import { now } from './rng.ts';

/**
 * A stretch in which a watched node answered nothing (no fault injected needed: a redis-server the
 * 2-core machine did not schedule, a fork, a slow command): from the watch's PING (or, after a lost
 * connection, its last answer) to the answer. `ownStallMs`: the network thread's own event-loop
 * stalls within it, summed (the part of the silence the watcher may owe to itself, not the node).
 */
export interface NodeSilence {
  node: string;
  start: number;
  end: number;
  ownStallMs: number;
  /** A command the node logged as slow (SLOWLOG) around the silence: the node was busy, not starved. */
  busyWith?: string;
}

/** A watch PING is sent this long after the last answer. */
const WATCH_PING_EVERY_MS = 20;
/** Silences shorter than this are not kept (the checker asks for half a command timeout or more). */
const WATCH_MIN_SILENCE_MS = 50;

type Request =
  | { id: number; op: 'start'; target: number }
  | { id: number; op: 'moveTo'; proxy: number; target: number }
  | { id: number; op: 'cut' | 'heal' | 'stop'; proxy: number }
  | { id: number; op: 'lag' }
  | { id: number; op: 'watch'; node: string; port: number }
  | { id: number; op: 'silences' };
type Reply = { id: number; port?: number; lagMs?: number; silences?: NodeSilence[]; error?: string };

/**
 * Watches one node the whole run: one PING at a time on a connection of its own, each sent
 * WATCH_PING_EVERY_MS after the last answer; a PING answered late, or a connection lost and made
 * again, is a silence. Any reply counts as an answer (an error reply included: the node answered).
 */
class Watch {
  private socket: net.Socket | undefined;
  private sentAt = 0;
  private lastAnswer = now();
  private lostConnection = false;

  constructor(
    private readonly node: string,
    private readonly port: number,
    private readonly found: (s: NodeSilence) => void,
  ) {
    this.connect();
  }

  private connect(): void {
    const socket = net.connect(this.port, '127.0.0.1');
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => this.ping());
    socket.on('data', () => this.answered());
    socket.on('error', () => {});
    socket.on('close', () => {
      this.lostConnection = true;
      setTimeout(() => this.connect(), WATCH_PING_EVERY_MS);
    });
  }

  private ping(): void {
    if (this.socket === undefined) return;
    this.sentAt = now();
    this.socket.write('PING\r\n');
  }

  private answered(): void {
    const t = now();
    const from = this.lostConnection ? this.lastAnswer : this.sentAt;
    this.lostConnection = false;
    this.lastAnswer = t;
    if (t - from >= WATCH_MIN_SILENCE_MS) this.found({ node: this.node, start: from, end: t, ownStallMs: 0 });
    setTimeout(() => this.ping(), WATCH_PING_EVERY_MS);
  }
}

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  const proxies = new Map<number, MovableEndpoint>();
  // The largest delay of this thread's event loop since the last ask (a check that the network is prompt).
  let lagMs = 0;
  let last = performance.now();
  // This thread's own stalls (end, ms), for the silences its watches find.
  const stalls: { end: number; ms: number }[] = [];
  setInterval(() => {
    const t = performance.now();
    const stall = t - last - 10;
    lagMs = Math.max(lagMs, stall);
    last = t;
    if (stall >= 10) {
      stalls.push({ end: now(), ms: stall });
      if (stalls.length > 100_000) stalls.splice(0, 50_000);
    }
  }, 10).unref();
  const silences: NodeSilence[] = [];
  const found = (s: NodeSilence): void => {
    silences.push(s);
  };
  // Each silence less this thread's own stalls within it, summed and clipped to it: computed when
  // asked, since a stall is recorded only by the tick after it (I/O callbacks, the watch's answers
  // among them, run before timers in the same turn).
  const withOwnStalls = (): NodeSilence[] =>
    silences.map((s) => {
      let own = 0;
      for (const st of stalls) own += Math.max(0, Math.min(s.end, st.end) - Math.max(s.start, st.end - st.ms));
      return { ...s, ownStallMs: Math.round(Math.min(own, s.end - s.start) * 10) / 10 };
    });
  port.on('message', (m: Request) => {
    void (async (): Promise<Reply> => {
      try {
        if (m.op === 'start') {
          const p = await MovableEndpoint.start(m.target);
          proxies.set(p.port, p);
          return { id: m.id, port: p.port };
        }
        if (m.op === 'watch') {
          new Watch(m.node, m.port, found); // lives on its socket's events until the thread ends
          return { id: m.id };
        }
        if (m.op === 'silences') return { id: m.id, silences: withOwnStalls() };
        if (m.op === 'lag') {
          const out = lagMs;
          lagMs = 0;
          return { id: m.id, lagMs: out };
        }
        const p = proxies.get(m.proxy);
        if (p === undefined) throw new Error(`no proxy on port ${m.proxy}`);
        if (m.op === 'moveTo') p.moveTo(m.target);
        else if (m.op === 'cut') p.cut();
        else if (m.op === 'heal') p.heal();
        else {
          await p.stop();
          proxies.delete(m.proxy);
        }
        return { id: m.id };
      } catch (err) {
        return { id: m.id, error: err instanceof Error ? err.message : String(err) };
      }
    })().then((reply) => port.postMessage(reply));
  });
  port.postMessage({ id: 0 });
}

/** A proxy in the network thread. */
export class RemoteProxy {
  constructor(
    private readonly net: Network,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  cut(): Promise<void> {
    return this.net.call({ op: 'cut', proxy: this.port }).then(() => {});
  }

  heal(): Promise<void> {
    return this.net.call({ op: 'heal', proxy: this.port }).then(() => {});
  }

  moveTo(target: number): Promise<void> {
    return this.net.call({ op: 'moveTo', proxy: this.port, target }).then(() => {});
  }

  stop(): Promise<void> {
    return this.net.call({ op: 'stop', proxy: this.port }).then(() => {});
  }
}

type Body = Request extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class Network {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();

  private constructor(private readonly worker: Worker) {
    worker.on('message', (r: Reply) => {
      const w = this.waiting.get(r.id);
      if (!w) return;
      this.waiting.delete(r.id);
      if (r.error !== undefined) w.reject(new Error(r.error));
      else w.resolve(r);
    });
    worker.on('error', (err) => {
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    });
  }

  static async start(): Promise<Network> {
    const worker = new Worker(new URL('./boot.mjs', import.meta.url), { workerData: { entry: import.meta.url } });
    const net = new Network(worker);
    await new Promise<void>((resolve, reject) => {
      net.waiting.set(0, { resolve: () => resolve(), reject });
    });
    return net;
  }

  call(body: Body): Promise<Reply> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...body, id });
    });
  }

  async proxy(target: number): Promise<RemoteProxy> {
    const r = await this.call({ op: 'start', target });
    return new RemoteProxy(this, r.port as number);
  }

  /** Watches `node` (on `port`) for silences until the network stops. */
  async watch(node: string, port: number): Promise<void> {
    await this.call({ op: 'watch', node, port });
  }

  /** The silences the watches found so far, each less the network thread's own stalls within it. */
  async silences(): Promise<NodeSilence[]> {
    return (await this.call({ op: 'silences' })).silences ?? [];
  }

  /** The network thread's largest event-loop delay since the last call (ms). */
  async lag(): Promise<number> {
    return (await this.call({ op: 'lag' })).lagMs ?? 0;
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
