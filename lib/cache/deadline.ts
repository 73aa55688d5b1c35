/** The request's time for the cache ran out before a command could be sent: not the node's fault. */
export class BudgetSpent extends Error {
  constructor() {
    super('the request spent its time for the cache');
  }
}

/**
 * `op`'s answer, or a rejection once `deadline` (ms since the epoch) passes. Every Redis call the
 * library makes goes through here, so none outlives its caller's budget (G3). ioredis's own
 * `commandTimeout` is not used: it starts only when a command is sent (with auto-pipelining a command
 * can wait unsent behind a pipeline a hung node never answers), and it would cost a second timer on
 * every call of the hit path.
 */
export function within<T>(address: string, deadline: number, op: () => Promise<T>): Promise<T> {
  const ms = deadline - Date.now();
  if (ms <= 0) return Promise.reject(new BudgetSpent());
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from ${address} within ${ms} ms`)), ms);
    op().then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
