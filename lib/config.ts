import { readFileSync } from 'node:fs';
import { ConfigError } from './errors.ts';
import type { TableDefinition } from './tables.ts';
import { LogKeyHasher, redactUrl, type LogKeys } from './log.ts';

export type CacheMode = 'shards' | 'cluster' | 'off';
export type WritePolicy = 'available' | 'strict';

export interface CacheConfig {
  /** `shards`: one client per URL in `nodes`, 100 virtual shards over them; `cluster`: one Redis Cluster; `off`: DynamoDB only. */
  mode: CacheMode;
  /** `redis://` or `rediss://` URLs (cluster mode: the seed nodes / configuration endpoint). */
  nodes: string[];
  /** Optional explicit map: `shardMap[virtualShard]` = index into `nodes`. */
  shardMap: number[] | undefined;
  /** Lifetime of a cached entry. */
  ttlSeconds: number;
  /** How often a `down` node whose connection failed is probed (a suspect one is re-probed sooner: node.ts). */
  checkIntervalSeconds: number;
  /** A reconnected or restarted node stays write-only (`starting`) for startCycles × checkInterval. */
  startCycles: number;
  /** Upper bound a Redis command may cost a request before the node is marked down (G3). */
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  writePolicy: WritePolicy;
  /** How long a miss's fill lease holds off other fillers (G5) before another caller may take over. */
  leaseMs: number;
  /** Dirty keys kept per node for repair; past this the node is flushed on recovery instead. */
  dirtyKeysMax: number;
  /** AUTH for nodes whose URL carries no password (ElastiCache AUTH token, from SSM/Secrets Manager). */
  authToken: string | undefined;
  /** The secret CACHE_AUTH_TOKEN came from (lib/secrets.ts): asked again when a node refuses the token. */
  authTokenSecretArn: string | undefined;
  /** ACL user for nodes whose URL names none. */
  authUser: string | undefined;
  /** PEM of the CA that signs the nodes' TLS certificates, when not a public one (rediss:// only). */
  tlsCa: string | undefined;
  /** How item keys appear in logs: as they are, or as an HMAC-SHA-256 prefix under CACHE_LOG_KEYS_SECRET. */
  logKeys: LogKeys;
  /**
   * Shards mode: how often a container registers its shard map on the nodes and reads the maps live
   * there (lib/cache/maps.ts), at most; a write or an invalidation waits for it when its view is older.
   */
  mapRefreshSeconds: number;
  /** A map whose record on a node nobody renewed for this long is gone: its entries are no longer trusted. */
  mapExpirySeconds: number;
  /** Plain `redis://` nodes may be sent a password (CACHE_ALLOW_PLAIN_AUTH): also those another map names. */
  allowPlainAuth: boolean;
}

export interface StoreConfig {
  endpoint: string | undefined;
  region: string;
  /** Physical table name = tablePrefix + logical name (stage prefix). */
  tablePrefix: string;
  /** Per-attempt timeout of a DynamoDB request (enforced by the SDK's HTTP handler). */
  timeoutMs: number;
  maxAttempts: number;
  /**
   * Most time one library operation spends in DynamoDB, every call, attempt and back-off together (a
   * write's whole commit); the SDK is stopped at it. Writers' fences and settles rest on this bound.
   */
  deadlineMs: number;
  /** Placeholder credentials for DynamoDB Local when the environment has none; AWS uses its own chain. */
  localCredentials: { accessKeyId: string; secretAccessKey: string } | undefined;
}

export interface HttpConfig {
  /** Largest request body the HTTP handlers read (API Gateway allows 10 MB, Lambda 6 MB). */
  maxBodyBytes: number;
}

export interface StreamConfig {
  /**
   * Physical name of the table where the Streams consumer parks the invalidations it cannot apply
   * (lib/stream/parking.ts); unset: such a record is retried where it stands, holding its shard.
   */
  parkingTable: string | undefined;
  /**
   * How long the event source mappings retry a stream record (their maximum record age), as the
   * deploy set it (infra/stream-mappings.cjs); the stream functions refuse to start when it does not
   * cover every table's entry TTL (lib/stream/window.ts). Unset: derived from the TTLs.
   */
  retryWindowSeconds: number | undefined;
}

export interface ObserveConfig {
  /** CloudWatch namespace of the functions' metrics (functions/metrics.ts publishes them). */
  metricsNamespace: string;
  /**
   * Share of applied stream records the consistency inspector checks against the cache (0 to 1;
   * lib/stream/inspector.ts): each costs one Redis round trip, and a DynamoDB read when an entry is found.
   */
  inspectSampleRate: number;
}

export interface Config {
  cache: CacheConfig;
  store: StoreConfig;
  http: HttpConfig;
  stream: StreamConfig;
  observe: ObserveConfig;
}

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `expected a whole number, got '${raw}'`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(name, `expected a number from ${min} to ${max}, got ${n}`);
  return n;
}

function rateVar(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw.trim());
  if (!/^\d*\.?\d+$/.test(raw.trim()) || !(n >= 0 && n <= 1)) throw new ConfigError(name, `expected a share from 0 to 1, got '${raw}'`);
  return n;
}

function choiceVar<T extends string>(env: Env, name: string, choices: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = raw.trim().toLowerCase();
  if (!(choices as readonly string[]).includes(v)) {
    throw new ConfigError(name, `expected one of ${choices.join(', ')}, got '${raw}'`);
  }
  return v as T;
}

function parseNodes(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(',').map((s, i) => {
    const url = s.trim();
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      // Redacted: a malformed entry may still hold a password.
      throw new ConfigError('CACHE_NODES', `entry ${i + 1} is not a URL: '${redactUrl(url)}'`);
    }
    if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
      throw new ConfigError('CACHE_NODES', `entry ${i + 1} must start with redis:// or rediss://`);
    }
    if (!parsed.hostname) throw new ConfigError('CACHE_NODES', `entry ${i + 1} has no host`);
    return url;
  });
}

function flagVar(env: Env, name: string): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new ConfigError(name, `expected 1, true, 0 or false, got '${env[name]}'`);
}

/**
 * A password (the URL's, or CACHE_AUTH_TOKEN for a URL without one) sent to a plain `redis://`
 * node crosses the network in clear on every (re)connect: refused, unless CACHE_ALLOW_PLAIN_AUTH
 * says this is a local stack.
 */
function checkNoPlainAuth(nodes: string[], authToken: string | undefined): void {
  nodes.forEach((url, i) => {
    const u = new URL(url);
    if (u.protocol !== 'redis:') return;
    const fix = 'use rediss:// (TLS), or set CACHE_ALLOW_PLAIN_AUTH=1 on a local stack';
    if (u.password) {
      throw new ConfigError('CACHE_NODES', `entry ${i + 1} (${redactUrl(url)}) carries a password over plain redis://, in clear: ${fix}`);
    }
    if (authToken !== undefined) {
      throw new ConfigError(
        'CACHE_AUTH_TOKEN',
        `would be sent in clear to the plain redis:// node ${redactUrl(url)} (CACHE_NODES entry ${i + 1}): ${fix}`,
      );
    }
  });
}

/** Shortest CACHE_LOG_KEYS_SECRET accepted: too long to guess (the deploy generates 64 characters). */
export const MIN_LOG_KEYS_SECRET_LENGTH = 32;

/**
 * CACHE_LOG_KEYS and its key. `hash` without CACHE_LOG_KEYS_SECRET is an error rather than an
 * unkeyed hash: a dictionary reverses that.
 */
function logKeysVar(env: Env): LogKeys {
  const mode = choiceVar(env, 'CACHE_LOG_KEYS', ['plain', 'hash'] as const, 'plain');
  const secret = env.CACHE_LOG_KEYS_SECRET ?? '';
  if (mode === 'plain') return 'plain';
  if (secret.trim() === '') {
    throw new ConfigError('CACHE_LOG_KEYS_SECRET', "required when CACHE_LOG_KEYS is 'hash' (the key of the logs' keyed hash)");
  }
  if (secret.length < MIN_LOG_KEYS_SECRET_LENGTH) {
    throw new ConfigError('CACHE_LOG_KEYS_SECRET', `must be at least ${MIN_LOG_KEYS_SECRET_LENGTH} characters, got ${secret.length}`);
  }
  return new LogKeyHasher(secret);
}

export const VIRTUAL_SHARDS = 100;

/**
 * `CACHE_SHARD_MAP`: comma-separated `from-to:node` ranges (node = index into CACHE_NODES, from 0)
 * that together cover virtual shards 0..99 exactly once, e.g. `0-49:0,50-99:1`.
 */
export function parseShardMap(raw: string | undefined, nodeCount: number): number[] | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const map: (number | undefined)[] = new Array(VIRTUAL_SHARDS).fill(undefined);
  for (const part of raw.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?:(\d+)\s*$/.exec(part);
    if (!m) throw new ConfigError('CACHE_SHARD_MAP', `'${part}' is not of the form from-to:node`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    const node = Number(m[3]);
    if (from > to || to >= VIRTUAL_SHARDS) {
      throw new ConfigError('CACHE_SHARD_MAP', `range '${part}' must lie within 0-${VIRTUAL_SHARDS - 1}`);
    }
    if (node >= nodeCount) {
      throw new ConfigError('CACHE_SHARD_MAP', `'${part}' names node ${node}, but CACHE_NODES lists ${nodeCount}`);
    }
    for (let s = from; s <= to; s++) {
      if (map[s] !== undefined) throw new ConfigError('CACHE_SHARD_MAP', `virtual shard ${s} is mapped twice`);
      map[s] = node;
    }
  }
  const missing = map.findIndex((n) => n === undefined);
  if (missing !== -1) throw new ConfigError('CACHE_SHARD_MAP', `virtual shard ${missing} is not mapped`);
  return map as number[];
}

function readCaFile(path: string | undefined): string | undefined {
  if (path === undefined || path.trim() === '') return undefined;
  let pem: string;
  try {
    pem = readFileSync(path.trim(), 'utf8');
  } catch (err) {
    throw new ConfigError('CACHE_TLS_CA_FILE', `cannot read '${path}': ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError('CACHE_TLS_CA_FILE', `'${path}' holds no PEM certificate`);
  return pem;
}

/**
 * How long a writer's fence holds, and a new epoch settles: the commit deadline, the begin's own
 * travel (at most the command timeout), and a second of margin for clocks and scheduling.
 */
export function fenceTimeMs(config: Config): number {
  return config.store.deadlineMs + config.cache.commandTimeoutMs + 1000;
}

/**
 * How long a map's new record on a node is not trusted while another map is live (W, lib/cache/maps.ts):
 * every writer reads the maps at least every refresh period, and a write that began before it learnt
 * the new map is over within the fence time; a second of margin.
 */
export function mapWaitMs(config: Config): number {
  return config.cache.mapRefreshSeconds * 1000 + fenceTimeMs(config) + 1000;
}

/** An entry's lifetime in a table: its own TTL, else CACHE_TTL_SECONDS. */
export function entryTtlSeconds(config: Config, table: TableDefinition): number {
  return table.ttlSeconds ?? config.cache.ttlSeconds;
}

/** Builds the typed settings once; nothing else in the library reads `process.env`. */
export function loadConfig(env: Env = process.env): Config {
  const mode = choiceVar<CacheMode>(env, 'CACHE_MODE', ['shards', 'cluster', 'off'], 'shards');
  const nodes = parseNodes(env.CACHE_NODES);
  if (mode !== 'off' && nodes.length === 0) {
    throw new ConfigError('CACHE_NODES', `required when CACHE_MODE is '${mode}' (set CACHE_MODE=off to run without a cache)`);
  }
  const shardMap = mode === 'shards' ? parseShardMap(env.CACHE_SHARD_MAP, nodes.length) : undefined;
  // DynamoDB answers in single-digit milliseconds at p99: a second per attempt and three seconds in all
  // leave room for retries and throttling back-off while keeping fences (and settles) short.
  const timeoutMs = intVar(env, 'DYNAMODB_TIMEOUT_MS', 1000, 100, 60_000);
  const maxAttempts = intVar(env, 'DYNAMODB_MAX_ATTEMPTS', 3, 1, 10);
  const deadlineMs = intVar(env, 'DYNAMODB_DEADLINE_MS', 3000, 100, 60_000);
  const endpoint = env.DYNAMODB_ENDPOINT?.trim() || undefined;
  if (endpoint !== undefined) {
    let protocol = '';
    try {
      protocol = new URL(endpoint).protocol;
    } catch {
      // reported below
    }
    if (protocol !== 'http:' && protocol !== 'https:') {
      throw new ConfigError('DYNAMODB_ENDPOINT', `expected an http:// or https:// URL, got '${redactUrl(endpoint)}'`);
    }
  }
  const tablePrefix = env.TABLE_PREFIX ?? '';
  if (!/^[A-Za-z0-9_.-]*$/.test(tablePrefix)) {
    throw new ConfigError('TABLE_PREFIX', 'may hold only letters, digits, _ . and -');
  }
  const parkingTable = env.STREAM_PARKING_TABLE?.trim() || undefined;
  if (parkingTable !== undefined && !/^[A-Za-z0-9_.-]{3,255}$/.test(parkingTable)) {
    throw new ConfigError('STREAM_PARKING_TABLE', `'${parkingTable}' is not a DynamoDB table name (3-255 letters, digits, _ . -)`);
  }
  const authToken = env.CACHE_AUTH_TOKEN || undefined;
  const allowPlainAuth = flagVar(env, 'CACHE_ALLOW_PLAIN_AUTH');
  if (mode !== 'off' && !allowPlainAuth) checkNoPlainAuth(nodes, authToken);
  const mapRefreshSeconds = intVar(env, 'CACHE_MAP_REFRESH_SECONDS', 10, 1, 3600);
  const mapExpirySeconds = intVar(env, 'CACHE_MAP_EXPIRY_SECONDS', 3600, 1, 30 * 86400);
  // A container trusts its own entries while its last registration is younger than expiry - refresh:
  // that must leave at least one refresh period.
  if (mapExpirySeconds < 3 * mapRefreshSeconds) {
    throw new ConfigError(
      'CACHE_MAP_EXPIRY_SECONDS',
      `must be at least 3 × CACHE_MAP_REFRESH_SECONDS (${3 * mapRefreshSeconds}), got ${mapExpirySeconds}`,
    );
  }
  const retryWindowRaw = env.STREAM_RETRY_WINDOW_SECONDS;
  // Lambda's limits on a mapping's maximum record age, below the stream's 24 h retention.
  const retryWindowSeconds =
    retryWindowRaw === undefined || retryWindowRaw.trim() === '' ? undefined : intVar(env, 'STREAM_RETRY_WINDOW_SECONDS', 0, 60, 86400);
  const metricsNamespace = env.CACHE_METRICS_NAMESPACE?.trim() || 'dynamo-redis-cache';
  // CloudWatch's limit on a namespace: 1-255 characters of letters, digits and . - _ / # : (no leading colon).
  if (!/^[A-Za-z0-9.\-_/#][A-Za-z0-9.\-_/#:]{0,254}$/.test(metricsNamespace)) {
    throw new ConfigError('CACHE_METRICS_NAMESPACE', `'${metricsNamespace}' is not a CloudWatch namespace (letters, digits, . - _ / # :)`);
  }
  return {
    stream: { parkingTable, retryWindowSeconds },
    observe: { metricsNamespace, inspectSampleRate: rateVar(env, 'CACHE_INSPECT_SAMPLE_RATE', 0.01) },
    // An item is at most 400 KB in DynamoDB; its JSON (base64 binary, escapes) stays well within 1 MiB.
    http: { maxBodyBytes: intVar(env, 'HTTP_MAX_BODY_BYTES', 1024 * 1024, 1024, 6 * 1024 * 1024) },
    cache: {
      mode,
      nodes,
      shardMap,
      ttlSeconds: intVar(env, 'CACHE_TTL_SECONDS', 3600, 1, 30 * 86400),
      checkIntervalSeconds: intVar(env, 'CACHE_CHECK_INTERVAL_SECONDS', 60, 1, 86400),
      startCycles: intVar(env, 'CACHE_START_CYCLES', 2, 0, 1000),
      commandTimeoutMs: intVar(env, 'CACHE_COMMAND_TIMEOUT_MS', 250, 1, 60_000),
      connectTimeoutMs: intVar(env, 'CACHE_CONNECT_TIMEOUT_MS', 1000, 1, 60_000),
      writePolicy: choiceVar<WritePolicy>(env, 'CACHE_WRITE_POLICY', ['available', 'strict'], 'available'),
      leaseMs: intVar(env, 'CACHE_LEASE_MS', 2000, 10, 60_000),
      dirtyKeysMax: intVar(env, 'CACHE_DIRTY_KEYS_MAX', 10_000, 1, 10_000_000),
      authToken,
      authTokenSecretArn: env.CACHE_AUTH_TOKEN_SECRET_ARN?.trim() || undefined,
      authUser: env.CACHE_AUTH_USER || undefined,
      tlsCa: readCaFile(env.CACHE_TLS_CA_FILE),
      logKeys: logKeysVar(env),
      mapRefreshSeconds,
      mapExpirySeconds,
      allowPlainAuth,
    },
    store: {
      endpoint,
      region: env.AWS_REGION?.trim() || env.AWS_DEFAULT_REGION?.trim() || 'us-east-1',
      tablePrefix,
      timeoutMs,
      maxAttempts,
      deadlineMs,
      localCredentials: endpoint !== undefined && !env.AWS_ACCESS_KEY_ID ? { accessKeyId: 'local', secretAccessKey: 'local' } : undefined,
    },
  };
}
