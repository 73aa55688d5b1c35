/**
 * The run's network: every proxy (partition, replication links, per-container endpoints of the
 * replicated shard) lives in a thread of its own, so that the harness's own work (the stream feed,
 * the out-of-band writer, garbage collection) never delays a byte between a client and a node —
 * a delay the clients would see as a slow node. Loaded by boot.mjs as a worker thread; `Network` is
 * its handle in the harness.
 */
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { TcpProxy as MovableEndpoint } from '../infra/local/tcp-proxy.ts';

type Request =
  | { id: number; op: 'start'; target: number }
  | { id: number; op: 'moveTo'; proxy: number; target: number }
  | { id: number; op: 'cut' | 'heal' | 'stop'; proxy: number }
  | { id: number; op: 'lag' };
type Reply = { id: number; port?: number; lagMs?: number; error?: string };

if (!isMainThread && parentPort !== null) {
  const port = parentPort;
  const proxies = new Map<number, MovableEndpoint>();
  // The largest delay of this thread's event loop since the last ask (a check that the network is prompt).
  let lagMs = 0;
  let last = performance.now();
  setInterval(() => {
    const t = performance.now();
    lagMs = Math.max(lagMs, t - last - 10);
    last = t;
  }, 10).unref();
  port.on('message', (m: Request) => {
    void (async (): Promise<Reply> => {
      try {
        if (m.op === 'start') {
          const p = await MovableEndpoint.start(m.target);
          proxies.set(p.port, p);
          return { id: m.id, port: p.port };
        }
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

  /** The network thread's largest event-loop delay since the last call (ms). */
  async lag(): Promise<number> {
    return (await this.call({ op: 'lag' })).lagMs ?? 0;
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
