import type { Cluster, Redis } from 'ioredis';

/*
 * The entry of one item is a Redis hash. Its fields (short: they travel on every call):
 *   d   the item as DynamoDB holds it (codec.ts encodeEntry), or "-" for not-found (R8)
 *   v   the item's version (the version attribute DynamoDB increments in every library write)
 *   l   the fill lease: a random token given to one missing reader (G5); gone = no fill allowed
 *   lt  when the lease may be taken over (ms, Redis clock), in case its holder died
 *   w   write stamp: a random token replaced by every invalidation (the seed's _wv, made unforgeable)
 *   p   writers between begin and end (the seed's mark_dirty, counted)
 *   pd  until when those writers' fence holds (ms, Redis clock): no lease is granted before it
 * Every rule that must not interleave with another client lives in one of these scripts.
 */

const NOW = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function extend(k, ms)
  local ttl = redis.call('PTTL', k)
  if ttl == -1 or ttl < ms then redis.call('PEXPIRE', k, ms) end
end
`;

/**
 * A reader missed. Returns {1, d} when an entry appeared meanwhile (only if ARGV[3] = 1: the node is
 * trusted for reads), {2, ms} while writers hold the fence or the node's epoch is settling, {3, ms,
 * holder's token} while another reader holds a live lease, and {0} when the lease is granted to
 * token ARGV[1] for ARGV[2] ms. KEYS[2] is the node's settle marker (KEYS[1] itself in cluster mode:
 * none).
 */
const LEASE = `${NOW}
local k = KEYS[1]
local f = redis.call('HMGET', k, 'd', 'l', 'lt', 'p', 'pd')
if f[1] and ARGV[3] == '1' then return {1, f[1]} end
if KEYS[2] ~= k then
  local settling = redis.call('PTTL', KEYS[2])
  if settling > 0 then return {2, settling} end
end
local now = now_ms()
local pd = tonumber(f[5] or '0')
if tonumber(f[4] or '0') > 0 and pd > now then return {2, pd - now} end
local lt = tonumber(f[3] or '0')
if f[2] and lt > now then return {3, lt - now, f[2]} end
local lease = tonumber(ARGV[2])
redis.call('HSET', k, 'l', ARGV[1], 'lt', now + lease)
extend(k, lease * 2)
return {0}
`;

/**
 * Stores a reader's item only while its lease is still in place. Any invalidation, writer, eviction,
 * expiry or takeover since the lease was granted removed or replaced it (R1, R2, R4, R5): refused.
 */
const FILL = `
local k = KEYS[1]
if redis.call('HGET', k, 'l') ~= ARGV[1] then return 0 end
redis.call('HSET', k, 'd', ARGV[2], 'v', ARGV[3])
redis.call('HDEL', k, 'l', 'lt')
redis.call('PEXPIRE', k, ARGV[4])
return 1
`;

/**
 * A reader's DynamoDB read failed: it gives its lease back (only its own), so readers waiting for its
 * fill take the lease at their next poll instead of sitting out the lease time.
 */
const RELEASE = `
local k = KEYS[1]
if redis.call('HGET', k, 'l') ~= ARGV[1] then return 0 end
redis.call('HDEL', k, 'l', 'lt')
return 1
`;

/**
 * A writer is about to commit: drop the entry and every lease, stamp it, raise the fence for ARGV[2]
 * ms (its DynamoDB write must finish within that). Returns the cached version ('' unknown, '0' cached
 * as absent) as a hint for the writer's conditional put.
 */
const BEGIN_WRITE = `${NOW}
local k = KEYS[1]
local f = redis.call('HMGET', k, 'd', 'v', 'p', 'pd')
local now = now_ms()
local p = tonumber(f[3] or '0')
local pd = tonumber(f[4] or '0')
if pd <= now then p = 0 end
local until_ms = now + tonumber(ARGV[2])
if pd > until_ms then until_ms = pd end
redis.call('HDEL', k, 'd', 'v', 'l', 'lt')
redis.call('HSET', k, 'w', ARGV[1], 'p', p + 1, 'pd', until_ms)
extend(k, until_ms - now + 1000)
if f[1] == '-' then return '0' end
return f[2] or ''
`;

/**
 * The writer's DynamoDB call is over. It may store its item (ARGV[3], version ARGV[4]) only when it
 * had the entry to itself from begin to end: its stamp still there (no invalidation, stream record,
 * eviction or other writer since), no other writer in flight, its fence not expired (R3). Otherwise
 * the entry is dropped and restamped (ARGV[2]). A vanished entry is left vanished (R4).
 */
const END_WRITE = `${NOW}
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
-- While the node's epoch settles, a writer that began before it (its fence flushed) may still be in
-- flight: nobody may store (KEYS[2] as in LEASE).
local settling = KEYS[2] ~= k and redis.call('EXISTS', KEYS[2]) == 1
local f = redis.call('HMGET', k, 'w', 'p', 'pd')
local now = now_ms()
local pd = tonumber(f[3] or '0')
local p = tonumber(f[2] or '0') - 1
if pd <= now then p = 0 end
if p <= 0 then redis.call('HDEL', k, 'p', 'pd') else redis.call('HSET', k, 'p', p) end
if ARGV[3] ~= '' and f[1] == ARGV[1] and p <= 0 and pd > now and not settling then
  redis.call('HSET', k, 'd', ARGV[3], 'v', ARGV[4])
  redis.call('HDEL', k, 'l', 'lt')
  redis.call('PEXPIRE', k, ARGV[5])
  return 1
end
redis.call('HDEL', k, 'd', 'v', 'l', 'lt')
redis.call('HSET', k, 'w', ARGV[2])
return 2
`;

/** Stream records and dirty-key repair: drop the entry and any lease, restamp. Idempotent. */
const INVALIDATE = `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
redis.call('HDEL', k, 'd', 'v', 'l', 'lt')
redis.call('HSET', k, 'w', ARGV[1])
return 1
`;

/**
 * R9: a node's data can be trusted only within an epoch (run_id) that a client has sealed. The first
 * client to see a new run_id flushes whatever the node came up with (a restart that reloaded a dump,
 * a promoted replica that missed invalidations) and leaves the seal, atomically with respect to fills.
 * A node that came back with data, or that this client knew under another run id, may have lost
 * fences of writers still in flight (ARGV[2] = 1 for the latter): for ARGV[1] ms (the fence time) it
 * then settles (KEYS[2]): no lease and no writer's store, so such a writer cannot be overtaken by a
 * fill of the old item. Returns the number of keys flushed, or -1 when the epoch was already sealed.
 */
const SEAL = `
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = redis.call('DBSIZE')
if n > 0 then redis.call('FLUSHDB') end
redis.call('SET', KEYS[1], '1')
if n > 0 or ARGV[2] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[1]) end
return n
`;

/** Each script with the number of keys it takes. */
export const SCRIPTS = {
  wtLease: [LEASE, 2],
  wtFill: [FILL, 1],
  wtRelease: [RELEASE, 1],
  wtBeginWrite: [BEGIN_WRITE, 1],
  wtEndWrite: [END_WRITE, 2],
  wtInvalidate: [INVALIDATE, 1],
  wtSeal: [SEAL, 2],
} as const;

export type LeaseReply = [0] | [1, string] | [2, number] | [3, number, string];

/** The scripts as commands; ioredis sends them with EVALSHA and reloads them after a NOSCRIPT. */
export interface ScriptCommands {
  wtLease(key: string, settleKey: string, token: string, leaseMs: number, trustData: '0' | '1'): Promise<LeaseReply>;
  wtFill(key: string, token: string, data: string, version: string, ttlMs: number): Promise<0 | 1>;
  wtRelease(key: string, token: string): Promise<0 | 1>;
  wtBeginWrite(key: string, stamp: string, fenceMs: number): Promise<string>;
  wtEndWrite(
    key: string,
    settleKey: string,
    stamp: string,
    newStamp: string,
    data: string,
    version: string,
    ttlMs: number,
  ): Promise<0 | 1 | 2>;
  wtInvalidate(key: string, stamp: string): Promise<0 | 1>;
  wtSeal(markerKey: string, settleKey: string, settleMs: number, knewPrevious: '0' | '1'): Promise<number>;
}

export type ScriptedClient = (Redis | Cluster) & ScriptCommands;

/** Defines the scripts once per client (module scope), never per request. */
export function installScripts(client: Redis | Cluster): ScriptedClient {
  for (const [name, [lua, numberOfKeys]] of Object.entries(SCRIPTS)) client.defineCommand(name, { numberOfKeys, lua });
  return client as ScriptedClient;
}

/** The key under which an epoch's seal is kept; it cannot collide with an entry (those end in `:t`). */
export const sealKey = (runId: string): string => `__wt_epoch:${runId}`;

/** While this key lives, a node that began a new epoch settles (no fills). */
export const SETTLE_KEY = '__wt_settle';
