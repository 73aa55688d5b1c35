import net from 'node:net';

/**
 * A TCP proxy in front of a redis-server, for faults no server signal can make:
 *
 * - `cut()` blackholes traffic (bytes are dropped, nothing reaches the server: a partition of one
 *   client from a node others still reach); `heal()` resets the connections that lived through the
 *   cut (as TCP does after a long partition) and forwards again. A paused server cannot stand in for
 *   this: it executes what was buffered in its socket once resumed.
 * - `silenceExisting()` black-holes only the connections open now, and keeps them open, while new
 *   connections are forwarded: a silent network drop of one socket, which TCP reports only after many
 *   minutes, although the node is reachable on a new connection.
 * - `moveTo(port)` re-points it and resets the live connections, as an ElastiCache primary
 *   endpoint's DNS name moves to the promoted replica after a failover.
 */
export class TcpProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private readonly silenced = new WeakSet<net.Socket>();
  private blackholed = false;
  port = 0;

  private constructor(private target: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const p = new TcpProxy(targetPort);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get targetPort(): number {
    return this.target;
  }

  private accept(client: net.Socket): void {
    client.setNoDelay(true);
    const upstream = net.connect(this.target, '127.0.0.1');
    upstream.setNoDelay(true);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('data', (b) => {
      if (!this.blackholed && !this.silenced.has(client)) upstream.write(b);
    });
    upstream.on('data', (b) => {
      if (!this.blackholed && !this.silenced.has(client)) client.write(b);
    });
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }

  /** Points new connections at `port`; the existing ones stay where they are (a DNS name that moved). */
  retarget(port: number): void {
    this.target = port;
  }

  /** Points new connections at `port` and resets the existing ones. */
  moveTo(port: number): void {
    this.target = port;
    this.resetConnections();
  }

  /** Drops every byte of the connections open now, forever, without closing them; new ones forward. */
  silenceExisting(): void {
    for (const [client] of this.pairs) this.silenced.add(client);
  }

  /** How many connections the proxy holds open. */
  get connections(): number {
    return this.pairs.size;
  }

  cut(): void {
    this.blackholed = true;
  }

  heal(): void {
    this.resetConnections();
    this.blackholed = false;
  }

  resetConnections(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  async stop(): Promise<void> {
    this.resetConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
