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

/**
 * Where a key that no path can carry goes instead (README, "Addressing items"): the query string,
 * which every API Gateway flavour hands over still encoded.
 */
const QUERY_FORM_HINT = 'address it in the query string instead: /tables/{table}/item?hash=…&range=…';

/**
 * `/tables/users/items/x%20y` → ['tables', 'users', 'items', 'x y']: split first, then decode each
 * segment once. What the function receives differs by gateway: an API Gateway HTTP API decodes the
 * path before the function sees it (`/a%2Fb` arrives as `/a/b`), a REST API, a Function URL and
 * serverless-offline do not. A segment that decodes to a `/` or a `%` means one thing to one and
 * another to the other, so it is refused rather than read one way (README, "Addressing items").
 */
function pathSegments(rawPath: string): string[] {
  return rawPath
    .split('/')
    .slice(1)
    .map((s) => {
      let decoded: string;
      try {
        decoded = decodeURIComponent(s);
      } catch {
        throw new ValidationError(
          'path',
          `'${s}' holds a malformed %-escape (a literal '%' in a key cannot go in the path: ${QUERY_FORM_HINT})`,
        );
      }
      if (decoded.includes('/') || decoded.includes('%')) {
        throw new ValidationError(
          'path',
          `'${s}' decodes to one holding '${decoded.includes('/') ? '/' : '%'}', which a path cannot carry on every API Gateway ` +
            `(an HTTP API decodes the path before the function sees it): ${QUERY_FORM_HINT}`,
        );
      }
      return decoded;
    });
}

/**
 * The route API Gateway matched (`GET /tables/{table}/items/{hash}`), when it names one: a path with
 * another number of segments than its route had a `%2F` decoded after routing, and its key would be
 * read wrongly. `$default` (and a test's event) names none.
 */
function checkRouteKey(routeKey: string | undefined, segments: readonly string[]): void {
  const template = routeKey?.split(' ')[1];
  if (template === undefined || !template.startsWith('/') || template.includes('+}')) return;
  const expected = template.split('/').length - 1;
  if (segments.length !== expected) {
    throw new ValidationError('path', `has ${segments.length} segments where its route ${routeKey} has ${expected}: ${QUERY_FORM_HINT}`);
  }
}

/**
 * The query string's parameters, from `rawQueryString` (still encoded on every API Gateway
 * flavour; form-encoded: `+` is a space, so a `+` in a value is sent as `%2B`) rather than
 * `queryStringParameters`, which an HTTP API joins with commas when a name repeats. A name given
 * twice is refused: `?hash=a&hash=b` names no one key.
 */
function queryParameters(event: APIGatewayProxyEventV2): Record<string, string> {
  if (typeof event.rawQueryString !== 'string') {
    const given = Object.entries(event.queryStringParameters ?? {}).filter((e): e is [string, string] => e[1] !== undefined);
    return Object.fromEntries(given);
  }
  const params = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(event.rawQueryString)) {
    if (params.has(name)) throw new ValidationError(`query.${name}`, 'is given more than once');
    params.set(name, value);
  }
  // Object.fromEntries defines own properties: a parameter named __proto__ stays a parameter.
  return Object.fromEntries(params);
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
    const size = err.size === undefined ? '' : ` (${err.size} bytes as DynamoDB counts them)`;
    return errorReply(413, err.code, `the item exceeds DynamoDB's 400 KB item size limit${size}`);
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
      checkRouteKey(event.routeKey, segments);
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
        query: queryParameters(event),
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
