import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/*
 * The entry of one item is a Redis hash. Its fields (short: they travel on every call):
 *   d       the tag (the node's epoch tag, then in shards mode the map's: lib/cache/maps.ts), then the
 *           item as DynamoDB holds it (codec.ts encodeEntry) or "-" for not-found (R8). An entry whose
 *           tag is not the node's current epoch and the reader's map generation is no entry (R9, below)
 *   v       the item's version (the version attribute DynamoDB increments in every library write)
 *   g       the canonical digest of the item's content (digest.ts; '' for not-found), stored with d and v
 *           by every store (END_WRITE, FILL): a stream record whose new image has the same version and
 *           digest leaves the entry alone (INVALIDATE, issue 13)
 *   l       the fill lease: the epoch tag and a random token given to one missing reader (G5); gone = no fill
 *   lt      when the lease may be taken over (ms, Redis clock), in case its holder died
 *   w       write stamp: a random token replaced by every invalidation (unforgeable, unlike a counter)
 *   f:<s>   one per writer in flight (s = its stamp): until when its fence holds (ms, Redis clock)
 *   pd      the latest of those fences, so a reader checks one field: no lease is granted before it
 *   h, hv   the entry a writer set aside at its begin (hg: its digest, hs: that writer's stamp), put
 *   hg, hs  back only by that writer, and only if DynamoDB definitely refused its write and nobody
 *           touched the entry since
 *
 * A node's epoch is its server's run_id (a restart, a reload of a dump and a promoted replica each get
 * a new one). Its tag (epochTag) prefixes every entry and lease written under it, so an entry written
 * in another epoch (loaded from a dump, replicated before a failover) is never trusted, and no node is
 * ever flushed to make that so. The epoch's seal, `__wt_epoch:<run_id>`, holds `<until>:<sealed at>`:
 * until when the epoch settles, and when it was sealed (ms, Redis clock): no TTL, so a volatile-* eviction policy never takes it,
 * and the scripts read it (GET refreshes its LRU clock), so an allkeys-* policy sees it in use. If it
 * is gone anyway, LEASE says so and the client seals again, settling: an eviction costs a settle,
 * never a flush and never a G1 hole.
 *
 * Every rule that must not interleave with another client lives in one of these scripts.
 */

/** How long an epoch's tag is: 48 bits of the run_id's 160. */
export const EPOCH_TAG_LENGTH = 12;
/** A map's id (lib/cache/maps.ts): 10 hex characters of its definition's hash. */
export const MAP_ID_LENGTH = 10;
/** A map's generation on a node: 8 random characters. */
export const GENERATION_LENGTH = 8;
/** How long a map's tag is: its id, then its generation on the node. */
export const MAP_TAG_LENGTH = MAP_ID_LENGTH + GENERATION_LENGTH;
/** How long the tag of an entry is in shards mode: the epoch's, then the map's. */
export const ENTRY_TAG_LENGTH = EPOCH_TAG_LENGTH + MAP_TAG_LENGTH;

const NOW = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function extend(k, ms)
  local ttl = redis.call('PTTL', k)
  if ttl == -1 or ttl < ms then redis.call('PEXPIRE', k, ms) end
end
-- The writers' fences other than the one named except: the latest deadline among those still live (0 = none),
-- and the names of the expired ones, for the caller to delete (a fence nobody lowers ends on its own).
-- Reads only.
local function live_fences(k, now, except)
  local latest, expired = 0, {}
  for _, name in ipairs(redis.call('HKEYS', k)) do
    if string.sub(name, 1, 2) == 'f:' and name ~= except then
      local until_ms = tonumber(redis.call('HGET', k, name) or '0')
      if until_ms <= now then expired[#expired + 1] = name
      elseif until_ms > latest then latest = until_ms end
    end
  end
  return latest, expired
end
-- A write that grows memory, as a script's first write: at maxmemory under noeviction Redis refuses
-- it (it checks only a script's first write), and pcall turns the refusal into false instead of an
-- error that would mark a node down which still answers and still deletes.
local function try_grow(...)
  local r = redis.pcall(...)
  return not (type(r) == 'table' and r.err)
end
-- Until when the epoch settles, from its seal ('<until>:<sealed at>'); nil when the seal is gone.
local function settle_until(seal)
  local s = redis.call('GET', seal)
  if not s then return nil end
  return tonumber(string.match(s, '^(%d+)'))
end
-- A map's record in the registry (lib/cache/maps.ts): generation, since, seen; nil when missing or malformed.
local function map_record(reg, id)
  local g, since, seen = string.match(redis.call('HGET', reg, id) or '', '^([^:]+):(%d+):(%d+)$')
  if not g then return nil end
  return g, tonumber(since), tonumber(seen)
end
-- The node settles while its seal says so; a missing seal (evicted, flushed by hand) counts as settling.
local function settling(seal, now)
  local u = settle_until(seal)
  return u == nil or u > now
end
`;

/** What LEASE answers, by name (`LeaseReply`'s first element). */
export const LEASE_REPLY = {
  /** The lease is ours: read DynamoDB, then FILL. */
  granted: 0,
  /** An entry of this epoch appeared meanwhile (only when the node is trusted for reads). */
  entry: 1,
  /** Writers hold the fence, or the epoch is settling: read DynamoDB, fill nothing. */
  fenced: 2,
  /** Another reader holds a live lease: wait for its fill. */
  leased: 3,
  /** The epoch's seal is gone: read DynamoDB, fill nothing, and seal the node again. */
  unsealed: 4,
  /** A writer holds the fence (ms until it ends): wait for its store, as for a filler, or read DynamoDB. */
  writing: 5,
  /** The reader's map has no live record of its generation on the node: read DynamoDB, fill nothing, register again. */
  unregistered: 6,
} as const;

/**
 * A reader missed. KEYS: the entry, the epoch's seal, the map registry (both the entry itself in cluster
 * mode: no epochs, no maps). ARGV: token, lease ms, '1' when the node is trusted for reads, the tag
 * (epoch, then map), then the reader's map id and generation on this node ('' in cluster mode), how
 * long a new generation waits before it is trusted (W) and after how long an unrenewed record is gone
 * (E), both ms. Returns {unregistered} when the reader's map has no live record of its generation here;
 * {entry, d} when an entry appeared meanwhile (trusted nodes only) that carries the reader's tag (its
 * generation older than W), or the tag of another map whose record here still holds that generation
 * (lib/cache/maps.ts); {fenced, ms} while the reader's generation is younger than W or while the epoch
 * settles; {writing, ms} while writers hold the fence; {leased, ms, holder's lease} while another
 * reader holds a live lease; {unsealed} when the seal is gone; and {granted} when the lease is ours.
 */
const LEASE = `${NOW}
local k = KEYS[1]
local tag = ARGV[4]
local f = redis.call('HMGET', k, 'd', 'l', 'lt', 'pd')
local now
local waiting = 0
local expiry = tonumber(ARGV[8])
if ARGV[5] ~= '' then
  -- The map's trust on this node (lib/cache/maps.ts): its record, of this generation, renewed within E,
  -- begun at least W ago. Read by every miss, so an LRU policy sees the registry in use.
  now = now_ms()
  local g, since, seen = map_record(KEYS[3], ARGV[5])
  if g ~= ARGV[6] or now - seen > expiry then return {6} end
  waiting = since + tonumber(ARGV[7]) - now
end
local d = f[1]
if d and ARGV[3] == '1' then
  if string.sub(d, 1, #tag) == tag then
    if waiting <= 0 then return {1, d} end
  elseif ARGV[5] ~= '' and string.sub(d, 1, ${EPOCH_TAG_LENGTH}) == string.sub(tag, 1, ${EPOCH_TAG_LENGTH}) then
    -- Another map's entry of this epoch: as good as the reader's own while that map's record here still
    -- holds the generation it was stored under (every writer since fenced this node for the key).
    local g, _, seen = map_record(KEYS[3], string.sub(d, ${EPOCH_TAG_LENGTH} + 1, ${EPOCH_TAG_LENGTH} + ${MAP_ID_LENGTH}))
    if g == string.sub(d, ${EPOCH_TAG_LENGTH} + ${MAP_ID_LENGTH} + 1, ${ENTRY_TAG_LENGTH}) and now - seen <= expiry then return {1, d} end
  end
end
if waiting > 0 then return {2, waiting} end
now = now or now_ms()
if KEYS[2] ~= k then
  local u = settle_until(KEYS[2])
  if u == nil then return {4} end
  if u > now then return {2, u - now} end
end
local pd = tonumber(f[4] or '0')
if pd > now then return {5, pd - now} end
local lt = tonumber(f[3] or '0')
if f[2] and lt > now then return {3, lt - now, f[2]} end
local lease = tonumber(ARGV[2])
-- A node out of memory takes no lease: read around it, fill nothing.
if not try_grow('HSET', k, 'l', tag .. ARGV[1], 'lt', now + lease) then return {2, 0} end
extend(k, lease * 2)
return {0}
`;

/**
 * Stores a reader's item only while its lease is still in place. Any invalidation, writer, eviction,
 * expiry or takeover since the lease was granted removed or replaced it (R1, R2, R4, R5), and a lease
 * of another epoch carries another tag (R9): refused. Nor while the epoch settles (a settle a later
 * client lengthened). KEYS: the entry, the epoch's seal (the entry itself in cluster mode). ARGV: the
 * lease (tag and token), the tagged entry, its version, the TTL in ms, its digest.
 */
const FILL = `${NOW}
local k = KEYS[1]
if redis.call('HGET', k, 'l') ~= ARGV[1] then return 0 end
if KEYS[2] ~= k and settling(KEYS[2], now_ms()) then return 0 end
if not try_grow('HSET', k, 'd', ARGV[2], 'v', ARGV[3], 'g', ARGV[5]) then return 0 end
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
 * A writer is about to commit: set the entry aside (h), drop every lease, stamp the entry, and raise
 * this writer's own fence for ARGV[2] ms (its DynamoDB write must be over by then: the store enforces
 * it). ARGV: stamp, fence ms, epoch tag. Returns the cached version ('' unknown, '0' cached as absent)
 * as a hint for the writer's conditional put.
 */
const BEGIN_WRITE = `${NOW}
local k = KEYS[1]
local tag = ARGV[3]
local f = redis.call('HMGET', k, 'd', 'v', 'g')
local now = now_ms()
local mine = now + tonumber(ARGV[2])
local latest, expired = live_fences(k, now)
if mine > latest then latest = mine end
local d = f[1]
if d and string.sub(d, 1, #tag) ~= tag then d = false end
-- The invalidation first: a deletion, which Redis allows even at maxmemory under noeviction (the
-- writes after it are then allowed too; the entry set aside takes the place of the one deleted).
redis.call('HDEL', k, 'd', 'v', 'g', 'l', 'lt')
if #expired > 0 then redis.call('HDEL', k, unpack(expired)) end
if d then redis.call('HSET', k, 'h', d, 'hv', f[2] or '', 'hg', f[3] or '', 'hs', ARGV[1]) end
redis.call('HSET', k, 'w', ARGV[1], 'f:' .. ARGV[1], mine, 'pd', latest)
extend(k, latest - now + 1000)
if not d then return '' end
-- Not-found is the tag and '-': told by length and last byte, not by a substring (Lua would copy an
-- entry of a megabyte for it, issue 18).
if #d == #tag + 1 and string.sub(d, -1) == '-' then return '0' end
return f[2] or ''
`;

/** What END_WRITE answers, by name. */
export const END_WRITE_REPLY = {
  /** The entry had vanished (evicted, expired, another epoch): nothing to do. */
  vanished: 0,
  /** The writer had the entry to itself: its item is stored (write-through). */
  stored: 1,
  /** Someone else touched the entry meanwhile, or the write failed: dropped and restamped. */
  dropped: 2,
  /** DynamoDB definitely refused the write and nobody touched the entry: the set-aside entry is back. */
  restored: 3,
} as const;

/**
 * The writer's DynamoDB call is over. KEYS: the entry, the epoch's seal (the entry itself in cluster
 * mode). ARGV: stamp, new stamp, outcome ('store', 'restore' or 'drop'), tagged entry, version, TTL ms,
 * digest.
 * The writer's own fence comes down. It may store its item, or put back the entry it set aside, only
 * when it had the entry to itself from begin to end: its stamp still there (no invalidation, stream
 * record, eviction or other writer since), no other writer's fence up, its own fence not expired, the
 * epoch not settling (R3). Otherwise the entry is dropped and restamped. A vanished entry is left
 * vanished (R4).
 */
const END_WRITE = `${NOW}
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
local now = now_ms()
local mine = 'f:' .. ARGV[1]
local f = redis.call('HMGET', k, 'w', mine)
local others, expired = live_fences(k, now, mine)
-- While the node's epoch settles, a writer that began before it (its fence lost) may still be in
-- flight: nobody may store.
local alone = f[1] == ARGV[1] and others == 0 and tonumber(f[2] or '0') > now
if alone and KEYS[2] ~= k and settling(KEYS[2], now) then alone = false end
-- The store is the script's first write, so a node out of memory refuses it (then: drop below).
local stored = alone and ARGV[3] == 'store' and try_grow('HSET', k, 'd', ARGV[4], 'v', ARGV[5], 'g', ARGV[7])
redis.call('HDEL', k, mine)
if #expired > 0 then redis.call('HDEL', k, unpack(expired)) end
if others > 0 then redis.call('HSET', k, 'pd', others) else redis.call('HDEL', k, 'pd') end
if stored then
  redis.call('HDEL', k, 'l', 'lt', 'h', 'hv', 'hg', 'hs')
  redis.call('PEXPIRE', k, ARGV[6])
  return 1
end
if alone and ARGV[3] == 'restore' then
  local h = redis.call('HMGET', k, 'h', 'hv', 'hs', 'hg')
  if h[1] and h[3] == ARGV[1] then
    redis.call('HSET', k, 'd', h[1], 'v', h[2], 'g', h[4] or '')
    redis.call('HDEL', k, 'l', 'lt', 'h', 'hv', 'hg', 'hs')
    return 3
  end
end
redis.call('HDEL', k, 'd', 'v', 'g', 'l', 'lt', 'h', 'hv', 'hg', 'hs')
redis.call('HSET', k, 'w', ARGV[2])
return 2
`;

/** What INVALIDATE answers, by name. */
export const INVALIDATE_REPLY = {
  /** No hash for the key: nothing to drop. */
  vanished: 0,
  /** The entry, what a writer set aside and any lease are gone; restamped. */
  invalidated: 1,
  /** The entry already holds what the record says the item is: left alone (only its lease is gone). */
  kept: 2,
} as const;

/**
 * Stream records and dirty-key repair: drop the entry, what a writer set aside and any lease; restamp.
 * Writers' fences stay (they are still in flight). Idempotent. ARGV: a new stamp; then, for a record
 * that says what the item now is (issue 13), the epoch tag and either a version and a digest (its new
 * image) or '' and '' (it was deleted). Such a record leaves an entry of this epoch alone when the
 * entry holds exactly that (the same version and digest; or not-found for a deletion): the entry
 * already reflects the record's change, and later changes have records of their own. Its lease still
 * goes (a filler may have read the item from before the change, R5). Anything else invalidates.
 */
const INVALIDATE = `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return 0 end
local tag = ARGV[2]
if tag then
  local f = redis.call('HMGET', k, 'd', 'v', 'g')
  local d = f[1]
  if d and string.sub(d, 1, #tag) == tag then
    -- Not-found is '-' after the tag: the epoch's, or (shards mode) the epoch's and a map's.
    local absent = string.sub(d, -1) == '-' and (#d == #tag + 1 or #d == ${ENTRY_TAG_LENGTH} + 1)
    local same
    if ARGV[3] == '' then same = absent
    else same = not absent and ARGV[4] ~= '' and f[2] == ARGV[3] and f[3] == ARGV[4] end
    if same then
      redis.call('HDEL', k, 'l', 'lt')
      return 2
    end
  end
end
redis.call('HDEL', k, 'd', 'v', 'g', 'l', 'lt', 'h', 'hv', 'hg', 'hs')
redis.call('HSET', k, 'w', ARGV[1])
return 1
`;

/**
 * R9: seals the epoch KEYS[1] (`__wt_epoch:<run_id>`). Entries of other epochs carry other tags and are
 * never trusted, so nothing is flushed. A new epoch, or one whose seal went missing, may have lost the
 * fences of writers still in flight (a restart, a promotion, an eviction): it settles for ARGV[1] ms
 * (the sealing client's fence time): no lease, no fill and no writer's store, so such a writer cannot
 * be overtaken by a fill of the old item. A client whose fence time is longer lengthens the settle to
 * its own fence time from the seal. Returns {keys on the node when sealed, or -1 when it already was;
 * ms the epoch still settles}.
 */
const SEAL = `${NOW}
local now = now_ms()
local settle = tonumber(ARGV[1])
local s = redis.call('GET', KEYS[1])
if s then
  local u, at = string.match(s, '^(%d+):(%d+)$')
  u, at = tonumber(u or s), tonumber(at or '0')
  if u > now and at + settle > u then
    u = at + settle
    redis.call('SET', KEYS[1], u .. ':' .. at)
  end
  local left = u - now
  if left < 0 then left = 0 end
  return {-1, left}
end
local n = redis.call('DBSIZE')
redis.call('SET', KEYS[1], (now + settle) .. ':' .. now)
return {n, settle}
`;

/**
 * The full repair of a node past its dirty-key limit: empties the node (FLUSHDB ASYNC: the keyspace
 * is swapped at once and freed in the background, so a large node does not block) and settles the
 * epoch KEYS[1] for ARGV[1] ms, atomically: an emptied node has lost its writers' fences, as a
 * restarted one has, so the same settle rule applies.
 */
const FLUSH = `${NOW}
redis.call('FLUSHDB', 'ASYNC')
local now = now_ms()
redis.call('SET', KEYS[1], (now + tonumber(ARGV[1])) .. ':' .. now)
return 1
`;

/**
 * A container's shard map on a node (lib/cache/maps.ts). KEYS: the registry. ARGV: the map's id, its
 * definition (JSON: node addresses and shard map, no secrets), a fresh generation, E (ms), a fresh node
 * id, the node ids this container knows for its map's nodes (JSON). The map's record `<id>` =
 * `<generation>:<since>:<seen>` (Redis ms) is renewed (seen = now); one that is missing or was not
 * renewed within E is created anew, with the fresh generation (since = now): entries tagged with an
 * earlier generation are never trusted again. Records of other maps not renewed within E are deleted.
 * The node's own id (`__node`, kept with the data: a replica has its primary's) is set once. Returns
 * {now, node id, generation, since, then for every other live map: id, generation, seen, definition,
 * node ids}; {now} alone when the node is out of memory (nothing renewed).
 */
const REGISTER = `${NOW}
local reg, id = KEYS[1], ARGV[1]
local expiry = tonumber(ARGV[4])
local now = now_ms()
local g, since, seen = map_record(reg, id)
if not g or now - seen > expiry then g, since = ARGV[3], now end
-- Node ids: one this container does not know ('') keeps the one another container of the map told.
local ids = cjson.decode(ARGV[6])
local told = redis.call('HGET', reg, id .. ':n')
if told then
  local ok, before = pcall(cjson.decode, told)
  if ok and type(before) == 'table' then
    for i = 1, #ids do
      if ids[i] == '' and type(before[i]) == 'string' then ids[i] = before[i] end
    end
  end
end
if not try_grow('HSET', reg, id, g .. ':' .. since .. ':' .. now, id .. ':d', ARGV[2], id .. ':n', cjson.encode(ids)) then return {now} end
redis.call('HSETNX', reg, '__node', ARGV[5])
local out = {now, redis.call('HGET', reg, '__node'), g, since}
local all = redis.call('HGETALL', reg)
for i = 1, #all, 2 do
  local name = all[i]
  local suffix = string.sub(name, -2)
  if suffix == ':d' or suffix == ':n' then
    if redis.call('HEXISTS', reg, string.sub(name, 1, -3)) == 0 then redis.call('HDEL', reg, name) end
  elseif name ~= id and name ~= '__node' then
    local og, _, oseen = map_record(reg, name)
    if not og or now - oseen > expiry then
      redis.call('HDEL', reg, name, name .. ':d', name .. ':n')
    else
      out[#out + 1] = name
      out[#out + 1] = og
      out[#out + 1] = oseen
      out[#out + 1] = redis.call('HGET', reg, name .. ':d') or ''
      out[#out + 1] = redis.call('HGET', reg, name .. ':n') or ''
    end
  end
end
return out
`;

/** Each script with the number of keys it takes. */
export const SCRIPTS = {
  wtLease: [LEASE, 3],
  wtFill: [FILL, 2],
  wtRelease: [RELEASE, 1],
  wtBeginWrite: [BEGIN_WRITE, 1],
  wtEndWrite: [END_WRITE, 2],
  wtInvalidate: [INVALIDATE, 1],
  wtSeal: [SEAL, 1],
  wtFlush: [FLUSH, 1],
  wtRegister: [REGISTER, 1],
} as const;

export type LeaseReply =
  | [typeof LEASE_REPLY.granted]
  | [typeof LEASE_REPLY.entry, string]
  | [typeof LEASE_REPLY.fenced, number]
  | [typeof LEASE_REPLY.leased, number, string]
  | [typeof LEASE_REPLY.unsealed]
  | [typeof LEASE_REPLY.writing, number]
  | [typeof LEASE_REPLY.unregistered];

export type EndWriteReply = (typeof END_WRITE_REPLY)[keyof typeof END_WRITE_REPLY];

export type InvalidateReply = (typeof INVALIDATE_REPLY)[keyof typeof INVALIDATE_REPLY];

/** How a writer ends: store its item, put back the entry it set aside (refused for sure), or drop it. */
export type WriteEnding = 'store' | 'restore' | 'drop';

/** The scripts as commands; ioredis sends them with EVALSHA and reloads them after a NOSCRIPT. */
export interface ScriptCommands {
  wtLease(
    key: string,
    sealKey: string,
    registryKey: string,
    token: string,
    leaseMs: number,
    trustData: '0' | '1',
    tag: string,
    mapId: string,
    generation: string,
    waitMs: number,
    expiryMs: number,
  ): Promise<LeaseReply>;
  wtFill(key: string, sealKey: string, lease: string, data: string, version: string, ttlMs: number, digest: string): Promise<0 | 1>;
  wtRelease(key: string, lease: string): Promise<0 | 1>;
  wtBeginWrite(key: string, stamp: string, fenceMs: number, tag: string): Promise<string>;
  wtEndWrite(
    key: string,
    sealKey: string,
    stamp: string,
    newStamp: string,
    ending: WriteEnding,
    data: string,
    version: string,
    ttlMs: number,
    digest: string,
  ): Promise<EndWriteReply>;
  wtInvalidate(key: string, stamp: string): Promise<InvalidateReply>;
  /** INVALIDATE for a record that says what the item now is: version and digest, or '' and '' for a deletion. */
  wtInvalidate(key: string, stamp: string, tag: string, version: string, digest: string): Promise<InvalidateReply>;
  wtSeal(sealKey: string, settleMs: number): Promise<[number, number]>;
  wtFlush(sealKey: string, settleMs: number): Promise<1>;
  wtRegister(
    registryKey: string,
    mapId: string,
    definition: string,
    generation: string,
    expiryMs: number,
    nodeId: string,
    nodeIds: string,
  ): Promise<(string | number)[]>;
}

export type ScriptedClient = Redis & ScriptCommands;

/** Defines the scripts once per client (module scope), never per request. */
export function installScripts(client: Redis): ScriptedClient {
  for (const [name, [lua, numberOfKeys]] of Object.entries(SCRIPTS)) client.defineCommand(name, { numberOfKeys, lua });
  return client as ScriptedClient;
}

/** The key under which an epoch's seal is kept; it cannot collide with an entry (those end in `:t`). */
export const sealKey = (runId: string): string => `__wt_epoch:${runId}`;

/**
 * The node's map registry (lib/cache/maps.ts): one hash, with no TTL (a volatile-* policy never takes
 * it) and read by every miss (LEASE), as the seal is. It cannot collide with an entry (those end in `:t`).
 */
export const REGISTRY_KEY = '__wt_maps';

/** The tag of an epoch: what prefixes its entries and leases. */
export const epochTag = (runId: string): string => runId.slice(0, EPOCH_TAG_LENGTH);

/**
 * Cluster mode: an epoch's seal, named with the hash tag `{tag}` of a slot its node owns (slots.ts
 * tagForSlot), since a script may only touch keys of the node's own slots. `epoch` is the run_id and
 * replication id hashed (node.ts).
 */
export const clusterSealKey = (tag: string, epoch: string): string => `__wt_epoch:{${tag}}:${epoch}`;

/**
 * Cluster mode: a primary's epoch, its run_id and replication id together (a primary demoted and
 * promoted again keeps its run_id, not its replication id).
 */
export const clusterEpoch = (runId: string, replId: string): string => createHash('sha1').update(`${runId}:${replId}`).digest('hex');

/** Cluster mode, where INFO carries no run_id: a random marker of the data set, the epoch's stand-in (node.ts). */
export const epochMarkerKey = (tag: string): string => `__wt_epoch_id:{${tag}}`;
