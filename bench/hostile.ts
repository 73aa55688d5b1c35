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
 * machine's two cores) costs far more than the function's own work. So the handler's DynamoDB
 * client records every call it sends (command and input, at the SDK's first middleware step), and
 * right after each handler call the bench sends the very same calls again (`replayFloor`): the same
 * inputs, version condition and versions included, with only the item's key replaced by the floor's,
 * through a client of the same settings. The floor's key is written by nothing else, so its item
 * goes through the same versions as the handler's: each replayed condition reads an old item of the
 * same size and holds or fails as the handler's did. `dynamoMs` is their median (0 when the handler
 * made no call: refused bodies, reads answered from the cache). A kind's `ratio` is
 * (median(handler) − dynamoMs) / median(JSON.parse): the time the function is busy beyond
 * DynamoDB's own; `wallRatio` keeps DynamoDB's time in, `cpuRatio` is the process's CPU while the
 * handler ran. The figure is the worst kind's `ratio`; the worst `wallRatio` and `cpuRatio` are
 * reported beside it.
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { createHttpApp } from '../functions/http/app.ts';
import { allRoutes } from '../functions/http/routes.ts';
import { BatchGetItemCommand, GetItemCommand, PutItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { StoreConfig } from '../lib/config.ts';
import { dynamoClientFor } from '../lib/store.ts';
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
  /** The DynamoDB calls of the last timed answer (a conditional PutItem shown as `PutItem?`). */
  dynamoCalls: string[];
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

/** The users item every PUT of these bodies writes. */
const HANDLER_KEY = 'hostile';

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
  const put = (body: string) => ({ method: 'PUT', path: `/tables/users/items/${HANDLER_KEY}`, body });
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

/** A DynamoDB call as the handler's client sent it. */
interface SentCall {
  command: string;
  input: Record<string, unknown>;
}

/**
 * A client of the store's settings that records every call it is asked to send (once a call: the
 * SDK's own retries of it happen below this step, and the floor's client of the same settings
 * retries alike).
 */
function recordingClient(config: StoreConfig, sent: SentCall[]): DynamoDBClient {
  const client = dynamoClientFor(config);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      sent.push({ command: context.commandName ?? '', input: args.input as Record<string, unknown> });
      return next(args);
    },
    { step: 'initialize', name: 'benchCallRecorder' },
  );
  return client;
}

/** Sends the call again (one of the three the routes measured here send). */
async function sendAgain(client: DynamoDBClient, { command, input }: SentCall): Promise<void> {
  if (command === 'PutItemCommand') await client.send(new PutItemCommand(input as never));
  else if (command === 'GetItemCommand') await client.send(new GetItemCommand(input as never));
  else if (command === 'BatchGetItemCommand') await client.send(new BatchGetItemCommand(input as never));
  else throw new Error(`hostile floor: the handler sent ${command}, which the floor does not replay`);
}

/**
 * Sends the calls the handler just sent, in the same order, each awaited as the handler awaited it:
 * the handler's item's key (the users table's `userId` HANDLER_KEY, in an `Item` or a `Key`)
 * replaced by `floorKey`, everything else as sent. A condition that failed for the handler fails
 * here too (the floor's item has the same history).
 */
async function replayFloor(client: DynamoDBClient, calls: readonly SentCall[], floorKey: string): Promise<void> {
  const rekey = (av: unknown) => {
    const attrs = av as Record<string, AttributeValue>;
    return attrs.userId?.S === HANDLER_KEY ? { ...attrs, userId: { S: floorKey } } : attrs;
  };
  for (const { command, input } of calls) {
    const replayed = {
      ...input,
      ...('Item' in input ? { Item: rekey(input.Item) } : {}),
      ...('Key' in input ? { Key: rekey(input.Key) } : {}),
    };
    try {
      await sendAgain(client, { command, input: replayed });
    } catch (err) {
      if ((err as { name?: string }).name !== 'ConditionalCheckFailedException') throw err;
    }
  }
}

async function measure(
  app: (e: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>,
  request: { method: string; path: string; body: string },
  repeats: number,
  next: () => number,
  sent: SentCall[],
  floor: (calls: readonly SentCall[]) => Promise<void>,
): Promise<HostileKindResult> {
  const { method, path, body } = request;
  const handlerMs: number[] = [];
  const handlerCpuMs: number[] = [];
  const parseMs: number[] = [];
  const dynamoMs: number[] = [];
  let status = 0;
  let dynamoCalls: string[] = [];
  for (let r = -1; r < repeats; r++) {
    const e = hostileEvent(method, path, body, next());
    const cpu0 = process.cpuUsage();
    sent.length = 0;
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
    // The handler's DynamoDB calls, made again straight (none: nothing to subtract).
    const calls = sent.splice(0);
    if (r >= 0)
      dynamoCalls = calls.map(
        ({ command, input }) => command.replace(/Command$/, '') + (input.ConditionExpression === undefined ? '' : '?'),
      );
    let d = 0;
    if (calls.length > 0) {
      t0 = process.hrtime.bigint();
      await floor(calls);
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
    dynamoCalls,
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
  const settings = { DYNAMODB_TIMEOUT_MS: '10000', DYNAMODB_DEADLINE_MS: '30000' };
  const sent: SentCall[] = [];
  const cache = stack.cache(settings, { dynamoClient: recordingClient(stack.config(settings).store, sent) });
  // The floor's own client, of the same settings; one key for the whole run, as the handler's.
  const floorClient = dynamoClientFor(stack.config(settings).store);
  const floor = (calls: readonly SentCall[]) => replayFloor(floorClient, calls, `${HANDLER_KEY}-floor`);
  await ready(cache);
  const app: (e: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2> = createHttpApp(cache, allRoutes);
  const maxBodyBytes = bytes ?? cache.config.http.maxBodyBytes;
  if (maxBodyBytes > cache.config.http.maxBodyBytes)
    throw new Error(`--hostile-bytes: at most HTTP_MAX_BODY_BYTES (${cache.config.http.maxBodyBytes})`);
  const quarter = worstBodies(Math.floor(maxBodyBytes / 4));
  const kinds: Record<string, HostileKindResult> = {};
  let n = 0;
  for (const [name, request] of Object.entries(worstBodies(maxBodyBytes))) {
    const small = await measure(app, quarter[name] as typeof request, counts.repeats, () => n++, sent, floor);
    const result = await measure(app, request, counts.repeats, () => n++, sent, floor);
    result.cpuGrowth = result.handlerCpuMs / small.handlerCpuMs;
    kinds[name] = result;
    log(
      `hostile ${name}: ${result.bodyBytes} B → ${result.status}, handler ${result.handlerMs.toFixed(2)} ms (DynamoDB's own ${result.dynamoMs.toFixed(2)} ms for ${result.dynamoCalls.join(' + ') || 'no call'}, CPU ${result.handlerCpuMs.toFixed(2)} ms, ×${result.cpuGrowth.toFixed(1)} for 4× the bytes), JSON.parse ${result.jsonParseMs.toFixed(2)} ms, ratio ${result.ratio.toFixed(2)} (wall ${result.wallRatio.toFixed(2)}), CPU ratio ${result.cpuRatio.toFixed(2)}`,
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
