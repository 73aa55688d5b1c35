/**
 * A write whose attempt may have reached DynamoDB is never sent again by the SDK's retries
 * (ARCHITECTURE.md, "The write path", and Limits).
 *
 * An attempt the SDK gives up on (DYNAMODB_TIMEOUT_MS, a connection reset, a 5xx answer) may still be
 * applied, even after a retry of it succeeded and the write was acknowledged, and after a later write
 * was acknowledged too: applied again then, a write conditioned only on existence (an `update`
 * without `ifVersion`), on absence (a create) or on nothing (a delete) puts back what the later
 * write replaced (G1). So such an attempt ends the write: it fails as DynamoDB's own error of that
 * attempt (a timeout: "may or may not have been applied"), never acknowledged. An answer from
 * DynamoDB with a status below 500 (a throttling refusal, a failed condition) and a connection never
 * made are still retried: DynamoDB did not apply them.
 *
 * Even a write conditioned on an exact version is not retried: a version counts again from 1 after a
 * delete, so a late attempt conditioned on version 5 could still apply to a later item at version 5.
 */
/** Failures where nothing reached DynamoDB: no connection was made. */
const NEVER_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN']);

/** True when the failed attempt may have been applied by DynamoDB, now or later. */
export function mayHaveBeenApplied(err: unknown): boolean {
  const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  if (e === undefined || e === null) return true;
  // The retry middleware does not retry an abort (the caller's signal or the deadline's) anyway.
  if (e.name === 'AbortError') return false;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status < 500) return false;
  return !NEVER_SENT_CODES.has(e.code ?? '');
}

/**
 * What one attempt's maybe-applied failure becomes, between the retry middleware and the transport:
 * an error the SDK's retry strategy classifies as a client error (its name is not one it retries, it
 * has no HTTP status, and it does not keep the attempt's error as `cause`, which the strategy searches
 * for a transient error). Outside the retry middleware it is unwrapped again (see `sentOnce`).
 */
class AttemptMayHaveBeenApplied extends Error {
  readonly $metadata: { attempts?: number; totalRetryDelay?: number } = {};
  constructor(readonly attemptError: unknown) {
    super('a write attempt may have reached DynamoDB; not retried');
    this.name = 'AttemptMayHaveBeenApplied';
  }
}

/** The part of a command's middleware stack used here (the SDK's MiddlewareStack). */
interface AddsMiddleware {
  add(middleware: (next: Handler) => Handler, options: { step: string; priority: string; name: string }): void;
}
type Handler = (args: unknown) => Promise<unknown>;

/**
 * Marks one write command (PutItem, UpdateItem, DeleteItem, BatchWriteItem) so that the SDK does not
 * retry an attempt that may have been applied; the command's own middleware, so the client it is
 * sent through (the library's, or the drop-in's wrapped client) is not changed. The caller gets the
 * attempt's own error, its `$metadata.attempts` counting every attempt sent (lib/store.ts `attemptsOf`).
 */
export function sentOnce<C extends { middlewareStack: unknown }>(command: C): C {
  const stack = command.middlewareStack as AddsMiddleware;
  stack.add(
    (next) => async (args: unknown) => {
      try {
        return await next(args);
      } catch (err) {
        throw mayHaveBeenApplied(err) ? new AttemptMayHaveBeenApplied(err) : err;
      }
    },
    // Innermost but for the transport: around the deserializer, which throws DynamoDB's answers as errors.
    { step: 'deserialize', priority: 'high', name: 'writeAttemptMayHaveBeenApplied' },
  );
  stack.add(
    (next) => async (args: unknown) => {
      try {
        return await next(args);
      } catch (err) {
        if (!(err instanceof AttemptMayHaveBeenApplied)) throw err;
        throw withAttempts(err.attemptError, err.$metadata);
      }
    },
    // Outside the retry middleware (finalizeRequest), which sets `$metadata.attempts` on what it throws.
    { step: 'build', priority: 'low', name: 'writeAttemptUnwrap' },
  );
  return command;
}

/** The attempt's error, with the retry middleware's count of attempts sent. */
function withAttempts(err: unknown, counted: { attempts?: number; totalRetryDelay?: number }): unknown {
  if (err === null || typeof err !== 'object') return err;
  const e = err as { $metadata?: Record<string, unknown> };
  e.$metadata = { ...e.$metadata, attempts: counted.attempts, totalRetryDelay: counted.totalRetryDelay };
  return err;
}
