/**
 * `worstBodyVsJsonParse` (issue 18): no request body up to the size limit may keep a function busy
 * for more than a small multiple of the time it takes to read it.
 *
 * Method: for each kind of worst body, filled up to HTTP_MAX_BODY_BYTES, the HTTP handler (all
 * routes, built in process over the bench's stack, as test/integration/http.test.ts builds it) is
 * called with it, and `JSON.parse` of the same bytes is timed beside it, alternately, `repeats`
 * times after one warm-up of each. The handler's wall time is everything the request costs the
 * function: parsing, validation, and the DynamoDB and Redis calls it waits for.
 *
 * What the figure counts: an accepted write waits for DynamoDB to store the item, which any
 * function writing that item waits for too, and which on DynamoDB Local (a JVM sharing this
 * machine's two cores) costs far more than the function's own work. So for a body the handler
 * stores (a PUT answered 2xx) the same DynamoDB calls the library makes (PutItem of the same
 * attribute values and, for an item with nested numbers, the consistent GetItem that reads it
 * back: ItemCache.put) are made straight with the bench's plain client, in the same loop, under
 * another key; `dynamoMs` is their median. A kind's `ratio` is (median(handler) − dynamoMs) /
 * median(JSON.parse): the time the function is busy beyond DynamoDB's own; `wallRatio` keeps
 * DynamoDB's time in, `cpuRatio` is the process's CPU while the handler ran. The figure is the worst
 * kind's `ratio`; the worst `wallRatio` and `cpuRatio` are reported beside it. Bodies the handler
 * refuses (4xx) and reads it answers from the cache have dynamoMs 0.
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { createHttpApp } from '../functions/http/app.ts';
import { allRoutes } from '../functions/http/routes.ts';
import { GetItemCommand, PutItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { itemFromJson, parseJsonExact } from '../functions/http/json.ts';
import { hasNestedNumbers, toAttributes } from '../lib/codec.ts';
import { ready, type BenchStack } from './setup.ts';
import { median } from './stats.ts';

export interface HostileCounts {
  /** Timed calls of each body (and as many JSON.parse of it). */
  repeats: number;
  /** Size of the worst bodies; default HTTP_MAX_BODY_BYTES (the smoke run keeps them small). */
  bytes?: number;
}

export interface HostileKindResult {
  method: string;
  path: string;
  bodyBytes: number;
  /** The handler's answer (every one of these bodies must get a 4xx or a success, never a 5xx). */
  status: number;
  handlerMs: number;
  /** DynamoDB's own time for the calls the answer needed, made straight (0 when it made none). */
  dynamoMs: number;
  /** CPU time of this process while the handler ran (user + system): what the function itself spent. */
  handlerCpuMs: number;
  jsonParseMs: number;
  /** (handlerMs − dynamoMs) / jsonParseMs: the figure. */
  ratio: number;
  /** handlerMs / jsonParseMs, DynamoDB's time included. */
  wallRatio: number;
  /** handlerCpuMs / jsonParseMs. */
  cpuRatio: number;
  /** handlerCpuMs of this body / that of the same kind at a quarter of the bytes. */
  cpuGrowth: number;
}

export interface HostileResult {
  maxBodyBytes: number;
  kinds: Record<string, HostileKindResult>;
  /** The largest ratio over the kinds (wall-clock time of the answer beyond DynamoDB's own). */
  worst: number;
  /** The largest wallRatio (DynamoDB's time included). */
  worstWall: number;
  /** The largest CPU ratio over the kinds. */
  worstCpu: number;
  /** The largest cpuGrowth over the kinds. */
  worstCpuGrowth: number;
}

/** A 38-digit number at the bottom of DynamoDB's range in its longest spelling: 170 characters. */
const LONGEST_VALID_NUMBER = `-0.${'0'.repeat(129)}${'12345678901234567890123456789012345678'}`;

/** `open` + as many `unit`s (comma-separated) as fit in `bytes` + `close`. */
function filled(bytes: number, open: string, unit: (i: number) => string, close: string): string {
  const parts: string[] = [];
  let size = open.length + close.length;
  for (let i = 0; ; i++) {
    const u = unit(i);
    if (size + u.length + 1 > bytes) break;
    parts.push(u);
    size += u.length + 1;
  }
  return open + parts.join(',') + close;
}

/** The worst bodies of each kind, each at most `bytes` long (ASCII, so characters are bytes). */
export function worstBodies(bytes: number): Record<string, { method: string; path: string; body: string }> {
  const put = (body: string) => ({ method: 'PUT', path: '/tables/users/items/hostile', body });
  const depth = Math.floor((bytes - 10) / 2);
  return {
    // Every number as long as an accepted one can be, at the limit of what is stored.
    longestNumbers: put(filled(bytes, '{"l":[', () => LONGEST_VALID_NUMBER, ']}')),
    // One token over the bound: refused before any pattern reads it, however long it is.
    overlongNumber: put(`{"n":1${'0'.repeat(bytes - 8)}1}`),
    // As many numbers as fit, each one a double cannot be trusted with (decimals take the exact path).
    manyNumbers: put(filled(bytes, '{"l":[', (i) => `${i % 10}.5`, ']}')),
    // Nested as deep as the bytes allow.
    deepNesting: put(`{"a":${'['.repeat(depth)}${']'.repeat(depth)}}`),
    // Long strings full of escapes (each a backslash run the token scan must count).
    longStrings: put(filled(bytes, '{"l":[', () => `"${'\\\\\\"x'.repeat(1000)}"`, ']}')),
    manyAttributes: put(filled(bytes, '{', (i) => `"a${i}":${i}`, '}')),
    // 100 keys (the most a batch-get takes), each with the longest sort key number and a hash key
    // of 2048 bytes spelled as escapes (six characters a byte pair).
    batchGet100: {
      method: 'POST',
      path: '/tables/readings/batch-get',
      body: `{"keys":[${Array.from(
        { length: 100 },
        (_, i) =>
          `{"sensorId":"${String(i).padStart(3, '0')}${'\\u00e9'.repeat(Math.max(0, Math.min(1022, Math.floor((bytes / 100 - 220) / 6))))}","ts":${LONGEST_VALID_NUMBER}}`,
      ).join(',')}]}`,
    },
  };
}

export function hostileEvent(method: string, rawPath: string, body: string, i: number): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: '',
    headers: { 'content-type': 'application/json', host: 'bench.execute-api.us-east-1.amazonaws.com', 'user-agent': 'bench' },
    requestContext: {
      accountId: '123456789012',
      apiId: 'bench',
      domainName: 'bench.execute-api.us-east-1.amazonaws.com',
      domainPrefix: 'bench',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'bench' },
      requestId: `hostile-${i}`,
      routeKey: '$default',
      stage: '$default',
      time: '05/Jun/2024:12:00:00 +0000',
      timeEpoch: 1717588800000,
    },
    body,
    isBase64Encoded: false,
  };
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/**
 * The DynamoDB calls ItemCache.put makes for this body, as a function of no cache would make them:
 * PutItem of the same attribute values (key replaced by `floorKey`, version 1) and, when the item
 * has nested numbers, the consistent GetItem reading it back.
 */
function dynamoFloor(dynamo: DynamoDBClient, table: string, body: string, floorKey: Record<string, AttributeValue>) {
  // Built on first use: only bodies the handler stored get here (the others may not even parse).
  let av: Record<string, AttributeValue> | undefined;
  let readBack = false;
  return async (): Promise<void> => {
    if (av === undefined) {
      av = { ...toAttributes(itemFromJson(parseJsonExact(body), 'body')), ...floorKey, _version: { N: '1' } };
      readBack = hasNestedNumbers(av);
    }
    await dynamo.send(new PutItemCommand({ TableName: table, Item: av }));
    if (readBack) await dynamo.send(new GetItemCommand({ TableName: table, Key: floorKey, ConsistentRead: true }));
  };
}

async function measure(
  app: (e: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>,
  request: { method: string; path: string; body: string },
  repeats: number,
  next: () => number,
  floor: (() => Promise<void>) | undefined,
): Promise<HostileKindResult> {
  const { method, path, body } = request;
  const handlerMs: number[] = [];
  const handlerCpuMs: number[] = [];
  const parseMs: number[] = [];
  const dynamoMs: number[] = [];
  let status = 0;
  for (let r = -1; r < repeats; r++) {
    const e = hostileEvent(method, path, body, next());
    const cpu0 = process.cpuUsage();
    let t0 = process.hrtime.bigint();
    const res = await app(e);
    const h = ms(t0);
    const cpu = process.cpuUsage(cpu0);
    status = res.statusCode ?? 0;
    t0 = process.hrtime.bigint();
    try {
      JSON.parse(body);
    } catch {
      /* every body here is well-formed JSON; timed either way */
    }
    const p = ms(t0);
    // Only for a body the handler stored: its DynamoDB calls, made straight.
    let d = 0;
    if (floor !== undefined && method === 'PUT' && status >= 200 && status < 300) {
      t0 = process.hrtime.bigint();
      await floor();
      d = ms(t0);
    }
    if (r >= 0) {
      handlerMs.push(h);
      handlerCpuMs.push((cpu.user + cpu.system) / 1000);
      parseMs.push(p);
      dynamoMs.push(d);
    }
  }
  const handler = median(handlerMs);
  const parse = median(parseMs);
  const dynamo = median(dynamoMs);
  return {
    method,
    path,
    bodyBytes: Buffer.byteLength(body),
    status,
    handlerMs: handler,
    dynamoMs: dynamo,
    handlerCpuMs: median(handlerCpuMs),
    jsonParseMs: parse,
    ratio: Math.max(0, handler - dynamo) / parse,
    wallRatio: handler / parse,
    cpuRatio: median(handlerCpuMs) / parse,
    cpuGrowth: Number.NaN,
  };
}

/**
 * Every kind at the body size limit (`bytes`, default HTTP_MAX_BODY_BYTES), and again at a quarter
 * of it: the handler's CPU for 4× the bytes (`cpuGrowth`) is about 4 when its work is linear, 16
 * when it is quadratic, as the number pattern of issue 18 was.
 */
export async function runHostile(
  stack: BenchStack,
  counts: HostileCounts,
  log: (m: string) => void,
  bytes?: number,
): Promise<HostileResult> {
  // DynamoDB Local (a JVM on the same two shared cores) can take over a second to store a 1 MB
  // item when the machine is loaded: the production timeout (1 s) would turn the accepted write
  // into a 503 that measures nothing. The handler's own work does not depend on these settings.
  const cache = stack.cache({ DYNAMODB_TIMEOUT_MS: '10000', DYNAMODB_DEADLINE_MS: '30000' });
  await ready(cache);
  const app: (e: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2> = createHttpApp(cache, allRoutes);
  const maxBodyBytes = bytes ?? cache.config.http.maxBodyBytes;
  if (maxBodyBytes > cache.config.http.maxBodyBytes)
    throw new Error(`--hostile-bytes: at most HTTP_MAX_BODY_BYTES (${cache.config.http.maxBodyBytes})`);
  const quarter = worstBodies(Math.floor(maxBodyBytes / 4));
  const kinds: Record<string, HostileKindResult> = {};
  let n = 0;
  for (const [name, request] of Object.entries(worstBodies(maxBodyBytes))) {
    const floorOf = (r: typeof request) =>
      r.method === 'PUT' ? dynamoFloor(stack.dynamo, stack.physicalTable, r.body, { userId: { S: `hostile-floor-${name}` } }) : undefined;
    const small = await measure(app, quarter[name] as typeof request, counts.repeats, () => n++, floorOf(quarter[name] as typeof request));
    const result = await measure(app, request, counts.repeats, () => n++, floorOf(request));
    result.cpuGrowth = result.handlerCpuMs / small.handlerCpuMs;
    kinds[name] = result;
    log(
      `hostile ${name}: ${result.bodyBytes} B → ${result.status}, handler ${result.handlerMs.toFixed(2)} ms (DynamoDB's own ${result.dynamoMs.toFixed(2)} ms, CPU ${result.handlerCpuMs.toFixed(2)} ms, ×${result.cpuGrowth.toFixed(1)} for 4× the bytes), JSON.parse ${result.jsonParseMs.toFixed(2)} ms, ratio ${result.ratio.toFixed(2)} (wall ${result.wallRatio.toFixed(2)}), CPU ratio ${result.cpuRatio.toFixed(2)}`,
    );
  }
  const all = Object.values(kinds);
  return {
    maxBodyBytes,
    kinds,
    worst: Math.max(...all.map((k) => k.ratio)),
    worstWall: Math.max(...all.map((k) => k.wallRatio)),
    worstCpu: Math.max(...all.map((k) => k.cpuRatio)),
    worstCpuGrowth: Math.max(...all.map((k) => k.cpuGrowth)),
  };
}
