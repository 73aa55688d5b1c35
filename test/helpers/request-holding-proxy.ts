import net from 'node:net';

/** A TCP proxy in front of DynamoDB Local that can hold the next request it is sent, and deliver it later. */
export class RequestHoldingProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private holdNext = false;
  private held: { upstream: net.Socket; bytes: Buffer[] } | undefined;
  port = 0;

  private constructor(
    private readonly host: string,
    private readonly target: number,
  ) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(endpoint: string): Promise<RequestHoldingProxy> {
    const url = new URL(endpoint);
    const p = new RequestHoldingProxy(url.hostname, Number(url.port));
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.port = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.target, this.host);
    this.sockets.add(client).add(upstream);
    let holding: Buffer[] | undefined;
    client.on('data', (b) => {
      if (holding === undefined && this.holdNext) {
        this.holdNext = false;
        holding = [];
        this.held = { upstream, bytes: holding };
      }
      if (holding !== undefined) holding.push(b);
      else upstream.write(b);
    });
    upstream.on('data', (b) => {
      if (holding === undefined) client.write(b);
    });
    // A connection whose request is held outlives its client (the SDK gives up on it and closes it):
    // the request is still on its way.
    client
      .on('error', () => undefined)
      .on('close', () => {
        if (holding === undefined) upstream.destroy();
      });
    upstream.on('error', () => undefined).on('close', () => client.destroy());
  }

  /** Holds the next request sent on any connection (and whatever follows it on that connection). */
  holdNextRequest(): void {
    this.holdNext = true;
  }

  get holding(): boolean {
    return this.held !== undefined;
  }

  /** Delivers the held request to DynamoDB; resolves once DynamoDB has answered it. */
  async deliver(): Promise<string> {
    const held = this.held;
    if (held === undefined) throw new Error('no request is held');
    const answered = new Promise<string>((resolve) =>
      held.upstream.once('data', (b) => resolve(b.toString('latin1').split('\r\n')[0] ?? '')),
    );
    for (const b of held.bytes) held.upstream.write(b);
    return answered;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
