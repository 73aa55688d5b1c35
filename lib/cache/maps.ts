import { createHash } from 'node:crypto';
import { VIRTUAL_SHARDS } from '../config.ts';
import { errorMessage } from '../errors.ts';
import { logger } from '../log.ts';
import { BudgetSpent, within } from './deadline.ts';
import type { CacheNode, MapTrust } from './node.ts';
import { GENERATION_LENGTH, MAP_ID_LENGTH, REGISTRY_KEY } from './scripts.ts';
import { randomToken } from './tokens.ts';
import { deadlineClock } from '../clock.ts';

/*
 * Live shard maps (ARCHITECTURE.md, "The shard map"). While a canary deploy keeps two maps live, or a
 * rollback brings one back, a key can live on one node under one map and on another under the other.
 * Each container registers its map on every node it knows (the REGISTER script: a record per map, with
 * a generation that is new each time the record is created) and reads the maps registered there, at
 * least every refresh period (H). Writers and invalidations then fence the key's node under every live
 * map; a reader trusts only entries tagged with its map's current generation on the node; and a
 * generation created while another map is live is trusted only after W (mapWaitMs: H + the fence time
 * + a margin), by when every writer of the other maps has learnt of it and every write that began
 * before is over.
 */

/** What other containers need to place a key under a map: node addresses (no credentials) and the shard map. */
export interface MapDefinition {
  nodes: string[];
  shards: number[];
}

/** A node's URL without its user and password: how a map names it to other containers. */
export function bareAddress(url: string): string {
  const u = new URL(url);
  u.username = '';
  u.password = '';
  return u.href;
}

/** The map's id: the same nodes in the same order and the same shard map give the same id, anywhere. */
export function mapIdOf(def: MapDefinition): string {
  return createHash('sha256').update(JSON.stringify(def)).digest('hex').slice(0, MAP_ID_LENGTH);
}

/**
 * An address as a definition names it: a redis:// or rediss:// URL exactly as bareAddress spells it
 * (so no credentials). Anything else would throw where the node is made (new URL, the credentials'
 * decoding) and fail the request that took the view (G3).
 */
function isBareAddress(n: unknown): boolean {
  if (typeof n !== 'string' || !/^rediss?:\/\//.test(n)) return false;
  try {
    return bareAddress(n) === n;
  } catch {
    return false;
  }
}

/** A definition read from a node, checked as strictly as a setting (a node is not trusted to be well-formed). */
function parseDefinition(raw: string): MapDefinition | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const d = v as Partial<MapDefinition> | null;
  if (d === null || !Array.isArray(d.nodes) || !Array.isArray(d.shards) || d.shards.length !== VIRTUAL_SHARDS) return undefined;
  const nodes = d.nodes;
  if (nodes.length === 0 || !nodes.every(isBareAddress)) return undefined;
  if (!d.shards.every((s) => Number.isInteger(s) && s >= 0 && s < nodes.length)) return undefined;
  return { nodes, shards: d.shards };
}

export interface MapViewSettings {
  /** H: the view is taken again when older than this. */
  refreshMs: number;
  /** E: a record not renewed for this long is gone. */
  expiryMs: number;
  /** W: how long a new generation waits while another map is live. */
  waitMs: number;
  commandTimeoutMs: number;
  clock: () => number;
}

interface KnownMap {
  def: MapDefinition;
  /** The ids of its nodes (by index, '' unknown), as its containers last told them: the same data set has the same id. */
  nodeIds: string[];
  /** When its record will have expired at the latest, as far as this container saw it renewed (view clock). */
  goneAt: number;
  /**
   * It places some virtual shard on another data set than this map does. One that places every shard
   * on the same data sets (the same servers under other names) needs no fencing of its own, and no
   * wait: every writer of either map fences the same nodes.
   */
  moves: boolean;
}

/** Node ids as a map's containers tell them: a list of strings, one per node, or nothing usable. */
function parseNodeIds(raw: string, count: number): string[] {
  try {
    const v: unknown = JSON.parse(raw);
    if (Array.isArray(v) && v.length === count && v.every((x) => typeof x === 'string')) return v as string[];
  } catch {
    // below
  }
  return new Array<string>(count).fill('');
}

/** Registering again after a LEASE found the record gone: at most this often. */
const LOST_REFRESH_MS = 1000;
/** Rounds of a view: maps found on the nodes read lead to their nodes, read in the next round. */
const VIEW_ROUNDS = 4;

/** This container's map on one of its nodes (MapTrust, node.ts). */
class Registration implements MapTrust {
  generation = '';
  tag = '';
  /** When the generation began, on the view clock (conservatively late). */
  private since = Number.POSITIVE_INFINITY;
  /** When this container last renewed the record (the request's start, conservatively early). */
  private renewedAt = Number.NEGATIVE_INFINITY;
  /** The other maps' generations on this node at the last view, and until when their records live at least. */
  private readonly others = new Map<string, { generation: string; goneAt: number }>();

  constructor(private readonly view: MapView) {}

  get mapId(): string {
    return this.view.id;
  }

  get waitMs(): number {
    return this.view.waitMs;
  }

  get expiryMs(): number {
    return this.view.expiryMs;
  }

  get othersLive(): boolean {
    return this.view.othersLive();
  }

  /**
   * Registered; the generation older than W (when another map is live); and renewed by this container
   * recently enough that the record cannot have expired meanwhile (E - H: a warm container that was
   * frozen longer registers again before it trusts anything).
   */
  trusted(now: number): boolean {
    return (
      this.generation !== '' && now >= this.since + this.view.waitMs && now - this.renewedAt < this.view.expiryMs - this.view.refreshMs
    );
  }

  /**
   * Another map's entry (its map tag) may be served on this node: that map's record here held the
   * entry's generation at the last view and cannot have expired since (LEASE checks the same on the node).
   */
  accepts(mapTag: string, now: number): boolean {
    const other = this.others.get(mapTag.slice(0, MAP_ID_LENGTH));
    return other !== undefined && other.generation === mapTag.slice(MAP_ID_LENGTH) && other.goneAt > now;
  }

  lost(): void {
    this.view.lost();
  }

  renewed(generation: string, since: number, renewedAt: number): void {
    this.generation = generation;
    this.tag = this.view.id + generation;
    this.since = since;
    this.renewedAt = renewedAt;
    this.others.clear();
  }

  sawOther(id: string, generation: string, goneAt: number): void {
    this.others.set(id, { generation, goneAt });
  }
}

/** The maps live on this container's nodes, as this container last saw them. */
export class MapView {
  readonly id: string;
  readonly expiryMs: number;
  readonly refreshMs: number;
  private readonly definition: string;
  private readonly known = new Map<string, KnownMap>();
  private readonly own = new Map<CacheNode, Registration>();
  private viewAt = Number.NEGATIVE_INFINITY;
  private lostAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;
  /** Own nodes by node id, and the node id found at each address: another map's address for a node of this map's data set is that node. */
  private readonly ownById = new Map<string, CacheNode>();
  /** The node id each node (own or another map's) answered when this container registered there. */
  private readonly idByNode = new Map<CacheNode, string>();
  private readonly ownNodes: readonly CacheNode[];
  private readonly ownShards: readonly number[];

  constructor(
    def: MapDefinition,
    ownNodes: readonly CacheNode[],
    private readonly nodeAt: (address: string) => CacheNode,
    private readonly settings: MapViewSettings,
  ) {
    this.id = mapIdOf(def);
    this.definition = JSON.stringify(def);
    this.ownNodes = ownNodes;
    this.ownShards = def.shards;
    this.expiryMs = settings.expiryMs;
    this.refreshMs = settings.refreshMs;
    for (const node of ownNodes) {
      const r = new Registration(this);
      this.own.set(node, r);
      node.map = r;
    }
  }

  /** W while another map is live (its writers may not know this map's new generations yet), else 0. */
  get waitMs(): number {
    return this.othersLive() ? this.settings.waitMs : 0;
  }

  /** Another map that moves keys is live, as far as this container saw (cheap: the hit path asks). */
  othersLive(): boolean {
    if (this.known.size === 0) return false;
    const now = this.settings.clock();
    for (const k of this.known.values()) if (k.moves && k.goneAt > now) return true;
    return false;
  }

  /** The ids of the other maps this container believes live. */
  otherMaps(): string[] {
    const now = this.settings.clock();
    return [...this.known].filter(([, k]) => k.goneAt > now).map(([id]) => id);
  }

  /**
   * For reads, which the scripts check themselves: a view older than H is taken again in the
   * background; the first one (a cold container) is awaited, so its first reads can trust the cache.
   */
  beforeRead(): Promise<void> | undefined {
    if (this.settings.clock() - this.viewAt < this.settings.refreshMs) return undefined;
    const taking = this.refresh();
    return this.viewAt === Number.NEGATIVE_INFINITY ? taking : undefined;
  }

  /** For writes and invalidations: a view older than H is taken again first (awaited, Lambda timers do not run while frozen). */
  async fresh(): Promise<void> {
    if (this.settings.clock() - this.viewAt >= this.settings.refreshMs) await this.refresh();
  }

  /** The nodes other live maps place a shard on, besides `own` (deduplicated). */
  othersFor(shard: number, own: CacheNode | undefined): CacheNode[] {
    const out: CacheNode[] = [];
    if (this.known.size === 0) return out;
    const now = this.settings.clock();
    for (const k of this.known.values()) {
      if (!k.moves || k.goneAt <= now) continue;
      const i = k.def.shards[shard] as number;
      const node = this.nodeOf(k, i);
      if (node !== own && !out.includes(node)) out.push(node);
    }
    return out;
  }

  /**
   * Node `i` of another map: this container's own node when it holds the same data set (the same node
   * id: the same server reached under another name, or its replica promoted), else a node at that
   * map's address.
   */
  private nodeOf(k: KnownMap, i: number): CacheNode {
    const told = k.nodeIds[i];
    const own = told ? this.ownById.get(told) : undefined;
    if (own !== undefined) return own;
    const node = this.nodeAt(k.def.nodes[i] as string);
    const found = this.idByNode.get(node);
    return (found ? this.ownById.get(found) : undefined) ?? node;
  }

  /** Every node of the live maps this container knows, its own first. */
  nodes(): CacheNode[] {
    const out = [...this.own.keys()];
    const now = this.settings.clock();
    for (const k of this.known.values()) {
      if (k.goneAt <= now) continue;
      for (let i = 0; i < k.def.nodes.length; i++) {
        const node = this.nodeOf(k, i);
        if (!out.includes(node)) out.push(node);
      }
    }
    return out;
  }

  /** A LEASE found this map's record gone on a node: register again (at most once a second). */
  lost(): void {
    const now = this.settings.clock();
    if (now - this.lostAt < LOST_REFRESH_MS) return;
    this.lostAt = now;
    void this.refresh();
  }

  /** Registers this map on every node known and reads the maps there; one at a time, callers share it. */
  refresh(): Promise<void> {
    // Never rejects: a view that cannot be taken (each node's failure is handled in registerOn; this
    // is for anything else) is logged and taken again at the next read or write, never a failed request
    // (G3) nor an unhandled rejection from a refresh in the background.
    this.refreshing ??= this.takeView()
      .catch((err: unknown) => logger.error('CACHE_MAP_VIEW_FAILED', { error: errorMessage(err) }))
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  private async takeView(): Promise<void> {
    const started = this.settings.clock();
    const visited = new Set<CacheNode>();
    // Nodes of maps found in one round are read in the next: a map is registered on every node of
    // every map it knows, so another map's containers find it on their own nodes too.
    const told = this.toldIds();
    for (let round = 0; round < VIEW_ROUNDS; round++) {
      const todo = this.nodes().filter((n) => !visited.has(n));
      if (todo.length === 0) break;
      for (const n of todo) visited.add(n);
      await Promise.all(todo.map((n) => this.registerOn(n)));
    }
    // Node ids learnt in this view (a container's first, a node emptied since) are told at once, so
    // that other maps' containers know these nodes under any name (nodeOf) without waiting a period.
    if (this.toldIds() !== told) await Promise.all(this.ownNodes.map((n) => this.registerOn(n)));
    this.viewAt = started;
    const now = this.settings.clock();
    for (const [id, k] of this.known) {
      if (k.goneAt <= now) this.known.delete(id);
      else k.moves = this.moves(k);
    }
  }

  /** The ids of this map's nodes as this container knows them (JSON, '' unknown), as REGISTER tells them. */
  private toldIds(): string {
    return JSON.stringify(this.ownNodes.map((n) => this.idByNode.get(n) ?? ''));
  }

  private moves(k: KnownMap): boolean {
    for (let s = 0; s < VIRTUAL_SHARDS; s++) {
      if (this.nodeOf(k, k.def.shards[s] as number) !== this.ownNodes[this.ownShards[s] as number]) return true;
    }
    return false;
  }

  private async registerOn(node: CacheNode): Promise<void> {
    if (!node.writable) return;
    const clock = this.settings.clock;
    const deadline = deadlineClock() + this.settings.commandTimeoutMs;
    const sent = clock();
    let reply: (string | number)[];
    try {
      if (!(await within(node.address, deadline, () => node.connected()))) return;
      const generation = randomToken().slice(0, GENERATION_LENGTH);
      const ownIds = this.toldIds();
      reply = await within(node.address, deadline, () =>
        node.client.wtRegister(REGISTRY_KEY, this.id, this.definition, generation, this.settings.expiryMs, randomToken(), ownIds),
      );
    } catch (err) {
      if (!(err instanceof BudgetSpent)) node.fail(err, 'register-map');
      return;
    }
    const got = clock();
    const now = Number(reply[0]);
    if (reply.length < 4) {
      logger.warn('CACHE_MAP_NOT_REGISTERED', { cacheNode: node.address, mapId: this.id, reason: 'the node is out of memory' });
      return;
    }
    const nodeId = String(reply[1]);
    this.idByNode.set(node, nodeId);
    const registration = this.own.get(node);
    if (registration !== undefined) {
      // An earlier id stays too: another map's containers may still tell it (the node was emptied and
      // took a new id since), and no other data set can hold it.
      this.ownById.set(nodeId, node);
      const generation = String(reply[2]);
      const since = got - (now - Number(reply[3]));
      registration.renewed(generation, since, sent);
      // A record created by this call: a new generation (the map's first container, or a record lost or expired).
      if (Number(reply[3]) === now) {
        logger.info('CACHE_MAP_REGISTERED', { cacheNode: node.address, mapId: this.id, generation, otherMaps: this.otherMaps() });
      }
    }
    for (let i = 4; i + 4 < reply.length; i += 5) {
      const id = String(reply[i]);
      const generation = String(reply[i + 1]);
      const seen = Number(reply[i + 2]);
      const def = parseDefinition(String(reply[i + 3]));
      if (def === undefined || mapIdOf(def) !== id) {
        logger.warn('CACHE_MAP_UNREADABLE', { cacheNode: node.address, mapId: id });
        continue;
      }
      const goneAt = got + this.settings.expiryMs - (now - seen);
      const before = this.known.get(id);
      if (before === undefined) logger.info('CACHE_MAP_FOUND', { cacheNode: node.address, mapId: this.id, otherMapId: id });
      this.known.set(id, {
        def,
        nodeIds: parseNodeIds(String(reply[i + 4]), def.nodes.length),
        goneAt: Math.max(goneAt, before?.goneAt ?? goneAt),
        // Until the view is over and its node ids are known, a map moves keys (the safe side).
        moves: before?.moves ?? true,
      });
      registration?.sawOther(id, generation, goneAt);
    }
  }
}
