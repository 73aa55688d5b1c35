/**
 * One error hierarchy for the library. `functions/` maps each class to an HTTP status in one place;
 * `code` is the stable, machine-readable name a caller can branch on.
 */
export class CacheLibraryError extends Error {
  readonly code: string;
  /**
   * True when the request certainly changed nothing in DynamoDB (it was refused before or by DynamoDB,
   * on its first attempt); false when it may have been applied (a timeout, a retried attempt).
   */
  readonly nothingWritten: boolean;
  constructor(code: string, message: string, options?: { cause?: unknown; nothingWritten?: boolean }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.nothingWritten = options?.nothingWritten ?? false;
  }
}

/** A write that DynamoDB definitely did not apply (see CacheLibraryError.nothingWritten). */
export function refusedForSure(err: unknown): boolean {
  return err instanceof CacheLibraryError && err.nothingWritten;
}

/** A setting read from the environment is missing or malformed; raised at start-up. */
export class ConfigError extends CacheLibraryError {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super('ConfigError', `${variable}: ${message}`);
    this.variable = variable;
  }
}

/** The caller's input is wrong (key, attribute, value); `field` names what. Nothing was changed. */
export class ValidationError extends CacheLibraryError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ValidationError', `${field}: ${message}`, { nothingWritten: true });
    this.field = field;
  }
}

/**
 * A request the drop-in client (lib/drop-in/) cannot serve with the guarantees held, refused before
 * anything was sent (a legacy parameter, a command that would write around the cache).
 */
export class UnsupportedCommandError extends CacheLibraryError {
  constructor(message: string) {
    super('UnsupportedCommand', message, { nothingWritten: true });
  }
}

/** A logical table name that no declaration knows. */
export class UnknownTableError extends CacheLibraryError {
  readonly table: string;
  constructor(table: string) {
    super('UnknownTable', `unknown table '${table}'`);
    this.table = table;
  }
}

/** The item a request needs to exist does not (update of a missing item). */
export class ItemNotFoundError extends CacheLibraryError {
  constructor(message = 'item not found', options?: { nothingWritten?: boolean }) {
    super('ItemNotFound', message, { nothingWritten: options?.nothingWritten ?? true });
  }
}

/** An `ifVersion` (HTTP If-Match) condition did not hold; nothing was written. */
export class VersionMismatchError extends CacheLibraryError {
  readonly currentVersion: number | undefined;
  /** `nothingWritten` false: an earlier attempt whose answer was lost may have been applied (see README). */
  /** `expected`: the version asked for, or '*' for "the item exists" (HTTP `If-Match: *`). */
  constructor(expected: number | '*', current: number | undefined, options?: { nothingWritten?: boolean }) {
    const wanted = expected === '*' ? 'the item to exist' : `version ${expected}`;
    super(
      'VersionMismatch',
      current === undefined
        ? `expected ${wanted}, but the item does not exist`
        : `expected ${wanted}, but the item is at version ${current}`,
      { nothingWritten: options?.nothingWritten ?? true },
    );
    this.currentVersion = current;
  }
}

/** DynamoDB refused the item for its size (400 KB limit). Nothing was written. */
export class ItemTooLargeError extends CacheLibraryError {
  /** The item's size as the library counted it before the write; undefined when DynamoDB refused it. */
  readonly size: number | undefined;
  constructor(message: string, size?: number) {
    super('ItemTooLarge', message, { nothingWritten: true });
    this.size = size;
  }
}

/** DynamoDB is unavailable (throttled, timed out, 5xx). The request may be retried. */
export class StoreUnavailableError extends CacheLibraryError {
  readonly retryAfterSeconds: number;
  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super('StoreUnavailable', message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds ?? 1;
  }
}

/**
 * CACHE_WRITE_POLICY=strict refused a write because its invalidation could not reach the cache node
 * first. Nothing was committed.
 */
export class CacheUnavailableError extends CacheLibraryError {
  readonly retryAfterSeconds: number;
  constructor(message: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super('CacheUnavailable', message, options);
    this.retryAfterSeconds = options?.retryAfterSeconds ?? 1;
  }
}

/** An error's message, or the thrown value spelled as a string (for logs and wrapped messages). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
