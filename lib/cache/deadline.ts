import { deadlineClock } from '../clock.ts';
/** The request's time for the cache ran out before a command could be sent: not the node's fault. */
export class BudgetSpent extends Error {
  constructor() {
    super('the request spent its time for the cache');
  }
}

/**
 * The node did not answer a command within the request's deadline. A suspicion, not a verdict: a node
 * that stalled for a moment (or a process starved of CPU) answers the next command (node.ts re-probes
 * it at once, with back-off), unlike a refused or closed connection.
 */
export class NoAnswer extends Error {
  constructor(address: string, ms: number) {
    super(`no answer from ${address} within ${ms} ms`);
  }
}

/**
 * Runs `fn` after the I/O callbacks of this event-loop turn: a timer fires in the timers phase, before
 * the poll phase reads the sockets, so a reply that arrived while the process was starved of CPU would
 * otherwise be rejected although it is already there.
 */
const afterIo = (fn: () => void): void => {
  setImmediate(fn);
};

/**
 * `op`'s answer, or a rejection once `deadline` (ms since the epoch) passes. Every Redis call the
 * library makes goes through here (the hit path's reads through DeadlineQueue below, the same bound
 * without a timer per call), so none outlives its caller's budget (G3). ioredis's own
 * `commandTimeout` is not used: it starts only when a command is sent (with auto-pipelining a command
 * can wait unsent behind a pipeline a hung node never answers), and it would cost a second timer on
 * every call of the hit path.
 */
export function within<T>(address: string, deadline: number, op: () => Promise<T>): Promise<T> {
  const ms = deadline - deadlineClock();
  if (ms <= 0) return Promise.reject(new BudgetSpent());
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => afterIo(() => reject(new NoAnswer(address, ms))), ms);
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

/** What a deadline can cut short: an ioredis Command (its reply settles it; `reject` settles it first). */
export interface Settleable {
  readonly isResolved: boolean;
  reject(err: Error): void;
}

/**
 * `within` for many calls at once, without a timer or a promise of its own per call: the hit path's
 * (node.ts `read`). Each call is an ioredis Command, kept with its deadline in deadline order; one
 * timer, armed for the earliest deadline still pending, rejects every Command whose deadline has
 * passed (the reply that comes later finds its Command settled, as with ioredis's own
 * `commandTimeout`) and re-arms for the next. The bound is each call's own deadline, as exact as a
 * timer per call. Answered Commands are dropped from the front as new ones come in: replies come in
 * order, so the queue holds about what is in flight.
 */
export class DeadlineQueue {
  private calls: (Settleable | undefined)[] = [];
  private deadlines: number[] = [];
  /** Milliseconds each call was given (for the error message). */
  private budgets: number[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (ms since the epoch). */
  private firesAt = Infinity;
  /** Queue length that triggers the next sweep of answered calls out of the middle (see add). */
  private sweepAt = 1024;

  constructor(private readonly address: string) {}

  /** Bounds `call` by `deadline`, which the caller checked is still ahead (`ms` = deadline − now). */
  add(call: Settleable, deadline: number, ms: number): void {
    const calls = this.calls;
    let head = this.head;
    while (head < calls.length && (calls[head] as Settleable).isResolved) calls[head++] = undefined;
    this.head = head;
    if (head === calls.length) {
      calls.length = 0;
      this.deadlines.length = 0;
      this.budgets.length = 0;
      this.head = 0;
    } else if (calls.length >= this.sweepAt) {
      this.sweep();
    }
    const n = calls.length;
    if (n === this.head || (this.deadlines[n - 1] as number) <= deadline) {
      calls.push(call);
      this.deadlines.push(deadline);
      this.budgets.push(ms);
    } else {
      // An earlier deadline than the last one queued (another budget, or the clock stepped back).
      let i = n;
      while (i > this.head && (this.deadlines[i - 1] as number) > deadline) i--;
      calls.splice(i, 0, call);
      this.deadlines.splice(i, 0, deadline);
      this.budgets.splice(i, 0, ms);
    }
    if (deadline < this.firesAt) this.arm(deadline, ms);
  }

  /** Rejects every call still pending (the client is closed); the timer stops. */
  close(): void {
    this.expire(Infinity, 'the cache node was closed');
  }

  private arm(deadline: number, ms: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.firesAt = deadline;
    this.timer = setTimeout(this.fire, ms);
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    // firesAt stays until the sweep runs, so a call added meanwhile with a later deadline does not re-arm.
    afterIo(() => {
      this.firesAt = Infinity;
      this.expire(deadlineClock());
    });
  };

  /** Rejects the pending calls whose deadline is `now` or earlier; re-arms for the next one. */
  private expire(now: number, why?: string): void {
    const calls = this.calls;
    const deadlines = this.deadlines;
    let head = this.head;
    while (head < calls.length) {
      const call = calls[head] as Settleable;
      if (!call.isResolved) {
        const deadline = deadlines[head] as number;
        if (deadline > now) {
          this.head = head;
          this.arm(deadline, deadline - deadlineClock());
          return;
        }
        call.reject(why === undefined ? new NoAnswer(this.address, this.budgets[head] as number) : new Error(why));
      }
      calls[head++] = undefined;
    }
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.firesAt = Infinity;
    calls.length = 0;
    deadlines.length = 0;
    this.budgets.length = 0;
    this.head = 0;
  }

  /**
   * Drops answered calls from anywhere in the queue. Needed only when a call at the front stays
   * unanswered (a rejected Command is never `isResolved`: its deadline comes, it goes), so the
   * answered ones behind it do not pile up until then.
   */
  private sweep(): void {
    const calls = this.calls;
    const deadlines = this.deadlines;
    const budgets = this.budgets;
    let out = 0;
    for (let i = this.head; i < calls.length; i++) {
      const call = calls[i] as Settleable;
      if (call.isResolved) continue;
      calls[out] = call;
      deadlines[out] = deadlines[i] as number;
      budgets[out] = budgets[i] as number;
      out++;
    }
    calls.length = out;
    deadlines.length = out;
    budgets.length = out;
    this.head = 0;
    this.sweepAt = Math.max(1024, 2 * out);
  }
}
