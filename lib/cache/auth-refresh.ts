/**
 * Which AUTH token a node's client tries next after the node refused one (WRONGPASS, NOAUTH): the
 * tokens the secret offers now (its current value, then its previous one, lib/secrets.ts), fetched
 * again once every token was refused, at most once per `minIntervalMs`. One per container, shared
 * by its nodes. The client reconnects on its own schedule and authenticates with whatever token it
 * was last given.
 */
export class AuthRefresh {
  private candidates: string[] = [];
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private fetching: Promise<void> | undefined;

  constructor(
    private readonly fetch: () => Promise<string[]>,
    private readonly minIntervalMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The token to try after `rejected` was refused; undefined: none yet, keep the one you have. */
  async next(rejected: string | undefined): Promise<string | undefined> {
    const i = rejected === undefined ? -1 : this.candidates.indexOf(rejected);
    const after = this.candidates.slice(i + 1).find((t) => t !== rejected);
    if (after !== undefined) return after;
    if (this.clock() - this.fetchedAt < this.minIntervalMs) return undefined;
    this.fetching ??= this.fetch().then(
      (tokens) => {
        this.candidates = tokens;
        this.fetchedAt = this.clock();
        this.fetching = undefined;
      },
      () => {
        this.fetchedAt = this.clock();
        this.fetching = undefined;
      },
    );
    await this.fetching;
    return this.candidates.find((t) => t !== rejected);
  }
}

/** Whether a client error says the node refused our credentials. */
export function isAuthRejection(err: unknown): boolean {
  const m = err instanceof Error ? err.message : String(err);
  return /^(WRONGPASS|NOAUTH)\b|invalid password|invalid username-password/i.test(m);
}
