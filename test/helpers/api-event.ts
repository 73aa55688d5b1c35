import assert from 'node:assert/strict';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';

export interface RequestOptions {
  body?: string | object;
  headers?: Record<string, string>;
  base64?: boolean;
  /** The route API Gateway matched (`GET /tables/{table}/items/{hash}`); default `$default`. */
  routeKey?: string;
}

/** An API Gateway HTTP API (payload 2.0) event, as Lambda would hand it over. */
export function apiEvent(method: string, path: string, opts: RequestOptions = {}): APIGatewayProxyEventV2 {
  const q = path.indexOf('?');
  const rawPath = q === -1 ? path : path.slice(0, q);
  const rawQueryString = q === -1 ? '' : path.slice(q + 1);
  const query = rawQueryString ? Object.fromEntries(new URLSearchParams(rawQueryString)) : undefined;
  let body = opts.body === undefined || typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  if (opts.base64 && body !== undefined) body = Buffer.from(body, 'utf8').toString('base64');
  const headers: Record<string, string> = {
    host: 'api.example.com',
    'user-agent': 'test',
    ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
  };
  for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
  return {
    version: '2.0',
    routeKey: opts.routeKey ?? '$default',
    rawPath,
    rawQueryString,
    headers,
    queryStringParameters: query,
    requestContext: {
      accountId: '000000000000',
      apiId: 'api',
      domainName: 'api.example.com',
      domainPrefix: 'api',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
      requestId: 'req',
      routeKey: opts.routeKey ?? '$default',
      stage: '$default',
      time: '01/Jan/2026:00:00:00 +0000',
      timeEpoch: 0,
    },
    body,
    isBase64Encoded: opts.base64 ?? false,
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | number | boolean>;
  text: string | undefined;
  json: any;
}

export async function call(
  app: (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>,
  method: string,
  path: string,
  opts: RequestOptions = {},
): Promise<Answer> {
  const res: APIGatewayProxyStructuredResultV2 = await app(apiEvent(method, path, opts));
  const text = res.body;
  return { status: res.statusCode ?? 0, headers: res.headers ?? {}, text, json: text === undefined ? undefined : JSON.parse(text) };
}

export function assertError(res: Answer, status: number, code?: string): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  assert.equal(res.headers['Content-Type'], 'application/json');
  assert.equal(typeof res.json?.error?.message, 'string');
  if (code !== undefined) assert.equal(res.json.error.code, code);
}
