import { createServer } from 'node:net';

/** Ports we must never hand out (6379 is the machine's own Redis). */
const RESERVED = new Set([6379]);

/** Ports already handed out by this process, so two concurrent callers never get the same one. */
const handedOut = new Set<number>();

function listenOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: unexpected server address'));
        return;
      }
      const { port } = addr;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago (listen on port 0,
 * read the port, close). Never returns 6379, and never returns the same port twice
 * within one process. Like any "free port" helper there is a small race between
 * closing the probe socket and the caller binding the port.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await listenOnce();
    if (RESERVED.has(port) || handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('freePort: could not find a usable port');
}
