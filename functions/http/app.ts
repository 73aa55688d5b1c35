import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import {
  CacheLibraryError,
  CacheUnavailableError,
  ItemNotFoundError,
  ItemTooLargeError,
  StoreUnavailableError,
  UnknownTableError,
  ValidationError,
  VersionMismatchError,
  logger,
  type ItemCache,
} from '../../lib/index.ts';
import { invocationMetrics } from '../metrics.ts';
import { bodyText, type HttpRequest } from './request.ts';
import { stringifyJson } from './json.ts';

export type HttpMethod = 'GET' | 'PUT' | 'PATCH' | 'DELETE' | 'POST';

/** What a route answers: a status, a JSON body (encoded by the app), headers. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface Route {
  method: HttpMethod;
  /** Literal segments and `{name}` parameters, e.g. `/tables/{table}/items/{hash}`. */
  path: string;
  handle(req: HttpRequest, cache: ItemCache): Promise<Reply>;
}

export type HttpHandler = (
  event: APIGatewayProxyEventV2,
  context?: Pick<Context, 'functionName'>,
) => Promise<APIGatewayProxyStructuredResultV2>;

interface CompiledRoute {
  route: Route;
  parts: ({ literal: string } | { param: string })[];
}

function compile(route: Route): CompiledRoute {
  const parts = route.path
    .split('/')
    .slice(1)
    .map((s) => (/^\{\w+\}$/.test(s) ? { param: s.slice(1, -1) } : { literal: s }));
  return { route, parts };
}

function match(compiled: CompiledRoute, segments: string[]): Record<string, string> | undefined {
  if (compiled.parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const part = compiled.parts[i];
    const seg = segments[i] as string;
    if (part === undefined) return undefined;
    if ('literal' in part) {
      if (part.literal !== seg) return undefined;
    } else {
      if (seg === '') return undefined; // an empty key is no item: /items/ is not a route
      params[part.param] = seg;
    }
  }
  return params;
}

/** `/tables/a%2Fb/items/x` → ['tables', 'a/b', 'items', 'x']: split first, then decode each segment once. */
function pathSegments(rawPath: string): string[] {
  return rawPath
    .split('/')
    .slice(1)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new ValidationError('path', `'${s}' holds a malformed %-escape`);
      }
    });
}

const JSON_TYPE = { 'Content-Type': 'application/json' };

function errorReply(status: number, code: string, message: string, headers: Record<string, string> = {}): Reply {
  return { status, body: { error: { code, message } }, headers };
}

/**
 * The one place errors become HTTP. The library's classes map to their statuses; 503s tell the
 * caller when to retry; anything else is a bug (no input should get here) and is logged as one.
 */
export function toErrorReply(err: unknown): Reply {
  if (err instanceof ValidationError) return errorReply(400, err.code, err.message);
  if (err instanceof UnknownTableError || err instanceof ItemNotFoundError) return errorReply(404, err.code, err.message);
  if (err instanceof VersionMismatchError) {
    // Said from the item's side: under `If-Match: *` the version the library was asked for was a guess.
    const current = err.currentVersion;
    return errorReply(
      412,
      err.code,
      current === undefined ? 'precondition failed: the item does not exist' : `precondition failed: the item is at version ${current}`,
    );
  }
  if (err instanceof ItemTooLargeError) {
    return errorReply(413, err.code, "the item exceeds DynamoDB's 400 KB item size limit");
  }
  if (err instanceof StoreUnavailableError || err instanceof CacheUnavailableError) {
    // The library's message may name endpoints or IAM principals: the caller gets a fixed one.
    const what = err instanceof StoreUnavailableError ? 'DynamoDB is unavailable' : 'the cache cannot take writes right now';
    return errorReply(503, err.code, `${what}; retry after ${err.retryAfterSeconds} s`, {
      'Retry-After': String(err.retryAfterSeconds),
    });
  }
  logger.error('HTTP_UNEXPECTED_ERROR', {
    error: err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : String(err),
    libraryCode: err instanceof CacheLibraryError ? err.code : undefined,
  });
  return errorReply(500, 'InternalError', 'internal error');
}

function toResult(reply: Reply, extraHeaders: Record<string, string>): APIGatewayProxyStructuredResultV2 {
  const headers: Record<string, string> = { ...extraHeaders, ...reply.headers };
  if (reply.body === undefined) return { statusCode: reply.status, headers };
  return { statusCode: reply.status, headers: { ...JSON_TYPE, ...headers }, body: stringifyJson(reply.body) };
}

function lowerCaseHeaders(headers: Record<string, string | undefined> | undefined): Record<string, string | undefined> {
  // API Gateway already lower-cases names (payload 2.0); other callers (tests, offline) may not.
  const out: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(headers ?? {})) out[name.toLowerCase()] = value;
  return out;
}

/**
 * An API Gateway HTTP API (payload 2.0) handler serving `routes` over `cache`. Matches method and
 * path, runs the route, and maps whatever it throws in toErrorReply; never throws itself. Each
 * invocation publishes its metrics (functions/metrics.ts), with the matched route's latency.
 */
export function createHttpApp(cache: ItemCache, routes: readonly Route[]): HttpHandler {
  const compiled = routes.map(compile);
  const metrics = invocationMetrics(cache);
  return async (event, context) => {
    metrics.coldStart(context);
    const started = performance.now();
    let route: Route | undefined;
    const responseHeaders: Record<string, string> = {};
    try {
      const method = (event.requestContext?.http?.method ?? '').toUpperCase();
      const segments = pathSegments(event.rawPath ?? '/');
      const candidates = compiled
        .map((c) => ({ c, params: match(c, segments) }))
        .filter((m): m is { c: CompiledRoute; params: Record<string, string> } => m.params !== undefined);
      if (candidates.length === 0) {
        return toResult(errorReply(404, 'RouteNotFound', `no route for ${event.rawPath ?? '/'}`), {});
      }
      const hit = candidates.find(({ c }) => c.route.method === method);
      if (hit === undefined) {
        const allow = [...new Set(candidates.map(({ c }) => c.route.method))].join(', ');
        return toResult(errorReply(405, 'MethodNotAllowed', `${method} is not allowed here; allowed: ${allow}`, { Allow: allow }), {});
      }
      // serverless-offline (and some proxies) send null for no body.
      const bodyBytes =
        event.body === undefined || event.body === null
          ? 0
          : event.isBase64Encoded
            ? Math.floor((event.body.length * 3) / 4)
            : Buffer.byteLength(event.body);
      if (bodyBytes > cache.config.http.maxBodyBytes) {
        return toResult(
          errorReply(413, 'PayloadTooLarge', `the body is over ${cache.config.http.maxBodyBytes} bytes (HTTP_MAX_BODY_BYTES)`),
          {},
        );
      }
      const req: HttpRequest = {
        method,
        params: hit.params,
        query: event.queryStringParameters ?? {},
        headers: lowerCaseHeaders(event.headers),
        body: bodyText(event.body, event.isBase64Encoded),
        responseHeaders,
      };
      route = hit.c.route;
      return toResult(await hit.c.route.handle(req, cache), responseHeaders);
    } catch (err) {
      return toResult(toErrorReply(err), responseHeaders);
    } finally {
      metrics.publish(route && { route: `${route.method} ${route.path}`, ms: performance.now() - started });
    }
  };
}
