import { Command, Redis, ReplyError, type RedisOptions } from 'ioredis';
import { errorMessage } from '../errors.ts';
import { logger, redactUrl, type LogKeys } from '../log.ts';
import { isAuthRejection, type AuthRefresh } from './auth-refresh.ts';
import type { CacheMetrics } from '../metrics.ts';
import { DirtyKeys } from './dirty.ts';
import {
  clusterEpoch,
  clusterSealKey,
  epochMarkerKey,
  epochTag,
  installScripts,
  REGISTRY_KEY,
  sealKey,
  type ScriptedClient,
} from './scripts.ts';
import { randomToken } from './tokens.ts';
import { BudgetSpent, DeadlineQueue, NoAnswer, within } from './deadline.ts';
import { redirectOf, slotOf, tagForSlot, type Redirect } from './slots.ts';
import { deadlineClock } from '../clock.ts';

/**
 * The state machine's states; `settling` is how /health shows an `up` node whose new epoch takes no
 * fills yet (scripts.ts SEAL).
 */
export type NodeStatus = 'up' | 'down' | 'starting' | 'settling';

export interface NodeSettings {
  checkIntervalMs: number;
  startCycles: number;
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  dirtyKeysMax: number;
  authToken?: string | undefined;
  /** Where a client finds another AUTH token after a node refused its own (a token from a secret). */
  authRefresh?: AuthRefresh | undefined;
  authUser?: string | undefined;
  tlsCa?: string | undefined;
  logKeys?: LogKeys;
  /** Test seam: the state machine's clock (lib/clock.ts by default: settles and map trust count elapsed time, which no wall-clock step may shorten). */
  clock?: () => number;
  /** How long a new epoch settles: the writers' fence time (set by the protocol's owner). */
  settleMs?: number;
  /** Counts status changes (lib/metrics.ts). */
  metrics?: CacheMetrics;
}

/**
 * This container's own shard map on the node (lib/cache/maps.ts MapView): the map part of the tag of
 * what it writes and trusts, and whether its record there is trusted yet. Undefined on a node only
 * another map names, and in cluster mode.
 */
export interface MapTrust {
  readonly mapId: string;
  /** The map's generation on the node; '' until the container registered there. */
  readonly generation: string;
  /** mapId + generation once registered, else ''. */
  readonly tag: string;
  /** How long a new generation waits before it is trusted (0 while no other map is live), ms. */
  readonly waitMs: number;
  /** After how long a record nobody renewed is gone (E), ms. */
  readonly expiryMs: number;
  /** Another map is live: a hit checks the record too (protocol.ts readHit). */
  readonly othersLive: boolean;
  /** Entries of this generation may be trusted and stored (state machine clock). */
  trusted(now: number): boolean;
  /** Another map's entry, by its map tag, may be served here (state machine clock). */
  accepts(mapTag: string, now: number): boolean;
  /** LEASE found no live record of the generation: register again. */
  lost(): void;
}

/**
 * What a primary of a Redis Cluster (cluster mode, cluster.ts) asks of the map that owns it: where its
 * epoch's seal lives, and what to do when the topology moved under it.
 */
export interface ClusterMembership {
  /** A slot the node owns (the same for every client with the same view): its seal's hash tag lands there. */
  sealSlot(): Promise<number | undefined>;
  /** The node owns no slot yet but a migration's ASK named it lately (a new primary's first slot, cluster.ts). */
  importing(): boolean;
  /** A redirect answer or a role change: the topology moved. Returns the node a redirected key now goes to. */
  moved(redirect: Redirect | undefined): CacheNode | undefined;
  /** The primary that owns `key`'s slot in the topology learnt last, if any. */
  ownerOf(key: string): CacheNode | undefined;
  /**
   * Learns the topology again now unless it was asked very recently (shares a refresh in flight), within
   * `deadline`; `moved`: the node answered MOVED for its own lowest slot, asked however recently.
   */
  relearn(deadline: number, moved?: boolean): Promise<void>;
}

export interface NodeHealth {
  id: string;
  address: string;
  status: NodeStatus;
  since: string;
  dirtyKeys: number;
}

/**
 * Fail fast, always: a dead or hung node must cost a request at most the command timeout (G3).
 * No offline queue (a command while disconnected fails at once), every call bounded by its caller's
 * deadline (deadline.ts), reconnection in the background (the health state machine, not the
 * client, decides when the node is trusted).
 *
 * Credentials, as the README says: the URL's user and password win, and a part the URL lacks comes
 * from CACHE_AUTH_USER / CACHE_AUTH_TOKEN, so `rediss://default@host` with a token sends
 * `AUTH default <token>`. `rediss://` turns TLS on, with CACHE_TLS_CA_FILE's CA if given.
 */
export function clientOptions(settings: NodeSettings, url: URL): RedisOptions {
  const username = url.username ? decodeURIComponent(url.username) : settings.authUser;
  const password = url.password ? decodeURIComponent(url.password) : settings.authToken;
  return {
    ...(password ? { password } : {}),
    ...(username ? { username } : {}),
    ...(url.protocol === 'rediss:' ? { tls: settings.tlsCa ? { ca: settings.tlsCa } : {} } : {}),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: settings.connectTimeoutMs,
    // Reconnect attempts soon and often (a refused connect costs nothing): a node that is back is used
    // within a fraction of a second, not after a long back-off.
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 200),
    // One write per event-loop turn: concurrent requests share a round trip; a batch is one pipeline per node.
    enableAutoPipelining: true,
    autoResubscribe: false,
    lazyConnect: false,
  };
}

/** The URL ioredis is given: credentials removed, since ioredis lets a URL's empty password override ours. */
export function withoutCredentials(url: URL): string {
  const bare = new URL(url.href);
  bare.username = '';
  bare.password = '';
  return bare.href;
}

/** Distinct connection errors a node logs (each once): enough to see why, bounded so logs cannot flood. */
const MAX_LOGGED_CONNECTION_ERRORS = 20;

/** A node that did not answer is re-probed this soon at first, then twice as late each time. */
const FIRST_REPROBE_MS = 100;

/** A verification found the node a replica (cluster mode: a failover under way). */
class NotPrimary extends Error {}
/** A probe's repair ended with keys owed still (they went dirty during it): the node answered. */
class StillOwed extends Error {}
/** How long a suspect node's connection stays mute before it is given up for a new one (a black hole). */
const SILENT_MS_BEFORE_RECONNECT = 10_000;
/** Rounds of dirty-key repair a probe makes while keys keep going dirty under it. */
const REPAIR_ROUNDS = 3;

/**
 * One Redis node (in cluster mode: one primary of the cluster) and its health state machine (ARCHITECTURE.md, "Nodes and their
 * health"): up → down on any failure. A node that did not answer in time is only suspected: it is
 * re-probed at once, with back-off, and trusted again as soon as it answers on the same connection with
 * the same run_id and this container owes it no invalidation. A node whose connection failed, was
 * replaced or came back under a new run_id is probed once per check interval and goes through
 * starting (write-only) for startCycles × checkInterval. Lives in module scope, so it survives warm
 * invocations.
 */
export class CacheNode {
  readonly id: string;
  readonly address: string;
  readonly client: ScriptedClient;
  readonly dirty: DirtyKeys;
  /** A primary of a Redis Cluster (cluster mode): its epoch's settle is kept by the client (see settlesLocally). */
  readonly isCluster: boolean;
  private readonly membership: ClusterMembership | undefined;
  private readonly settings: NodeSettings;
  private readonly clock: () => number;
  private state: Exclude<NodeStatus, 'settling'> = 'up';
  private since: number;
  private lastCheck = 0;
  /** When the next probe of a down node is due (state machine clock). */
  private nextProbeAt = 0;
  /** Down only because a command got no answer in time (NoAnswer): re-probed with back-off. */
  private suspect = false;
  private reprobeMs = FIRST_REPROBE_MS;
  /** When the node became a suspect (state machine clock). */
  private suspectSince = 0;
  /** Counts the connection's closes: a probe can tell whether the node kept its connection since it failed. */
  private connection = 0;
  private failedOnConnection = 0;
  private runId: string | undefined;
  /** The key of the current epoch's seal (scripts.ts SEAL), once verified. */
  private epochSeal: string | undefined;
  /** The most replicas the node reported at a verification of its current epoch (INFO replication): strict writes wait for one. */
  private replicaCount = 0;
  /** The current epoch's tag (scripts.ts): prefixes every entry and lease this client writes. */
  private tag = '';
  /** Until when (state machine clock) the epoch settles, as far as this client learnt it. */
  private settleUntil = 0;
  private verified = false;
  private verifying: Promise<boolean> | undefined;
  /** The probe in flight, if any; tests await it. */
  probing: Promise<boolean> | undefined;
  /** The hit path's reads in flight and their deadlines (see read). */
  private readonly reads: DeadlineQueue;
  /** The socket held corked until the end of this event-loop turn (see read), if any. */
  private corked: { uncork(): void } | undefined;
  /** This container's own shard map on the node, in shards mode (set by the ShardMap). */
  map: MapTrust | undefined;

  /**
   * @param url the node's URL (credentials as the README says)
   * @param membership set for a primary of a Redis Cluster (cluster.ts): the map that routes its slots
   * @param tlsServername the name its TLS certificate carries, when `url` names it by address (cluster mode)
   */
  constructor(id: string, url: string, settings: NodeSettings, membership?: ClusterMembership, tlsServername?: string) {
    this.id = id;
    this.settings = settings;
    this.clock = settings.clock ?? deadlineClock;
    this.since = this.clock();
    this.membership = membership;
    this.isCluster = membership !== undefined;
    this.address = redactUrl(url);
    this.dirty = new DirtyKeys(this.address, settings.dirtyKeysMax, settings.logKeys ?? 'plain');
    this.reads = new DeadlineQueue(this.address);
    const u = new URL(url);
    const opts = clientOptions(settings, u);
    if (opts.tls && tlsServername) opts.tls = { ...opts.tls, servername: tlsServername };
    this.client = installScripts(new Redis(withoutCredentials(u), opts));
    this.client.on('ready', () => {
      void this.verify();
    });
    this.client.on('close', () => {
      this.verified = false;
      this.connection++;
    });
    // Errors surface on the commands that hit them (an unhandled 'error' event would crash the
    // process), but only the client sees why a connection fails (a TLS certificate refused, AUTH
    // refused): log each distinct reason once per node, without secrets, so reconnects do not flood.
    const seen = new Set<string>();
    const secrets = [opts.password, settings.authToken].filter((s): s is string => !!s);
    const refresh = settings.authRefresh;
    let password = opts.password;
    const report = (err: unknown): void => {
      let reason = errorMessage(err);
      for (const secret of secrets) reason = reason.split(secret).join('…');
      if (seen.has(reason) || seen.size >= MAX_LOGGED_CONNECTION_ERRORS) return;
      seen.add(reason);
      logger.warn('CACHE_NODE_CONNECTION_ERROR', { cacheNode: this.address, error: reason });
    };
    this.client.on('error', report);
    // A refused token (a rotated secret, README "Rotating the AUTH token"): the next reconnect
    // authenticates with the next token the secret offers.
    if (refresh) {
      this.client.on('error', (err: unknown): void => {
        if (!isAuthRejection(err)) return;
        void refresh.next(password).then((next) => {
          if (next === undefined || next === password) return;
          password = next;
          secrets.push(next);
          this.client.options.password = next;
        });
      });
    }
  }

  /**
   * The seal scripts check for `key`: the current epoch's; none (the key itself) in cluster mode, where
   * a script may touch only keys of one slot and the seal lives in another: there the client keeps the
   * settle (settlesLocally).
   */
  sealKeyFor(key: string): string {
    return this.isCluster || this.runId === undefined ? key : sealKey(this.runId);
  }

  /** The map registry scripts check: the node's, or none (the key itself) in cluster mode (no shard maps there). */
  registryKeyFor(key: string): string {
    return this.isCluster ? key : REGISTRY_KEY;
  }

  /**
   * The tag of what this client writes and trusts on the node: the epoch it verified, then (shards
   * mode) its map's generation on the node (lib/cache/maps.ts).
   */
  get epochTag(): string {
    return this.tag + (this.map?.tag ?? '');
  }

  /**
   * Cluster mode: the epoch settles, as far as this client learnt it (from SEAL's answer at each
   * verification). The scripts cannot see the seal there (another slot), so the protocol itself takes
   * no lease, fills nothing and stores no writer's entry meanwhile (protocol.ts).
   */
  get settlesLocally(): boolean {
    // A migration's target verified while it owned no slot has no seal (verifyEpoch): nothing is stored
    // there until it owns a slot and is sealed, so an import aborted leaves no entry of this client behind.
    return this.isCluster && (this.clock() < this.settleUntil || (this.verified && this.epochSeal === undefined));
  }

  /**
   * A redirect (MOVED, ASK) is no failure of the node: the slot moved. The map learns it, and the
   * redirected key's new node is returned (with whether it must be asked with ASKING first).
   */
  redirected(err: unknown): { node: CacheNode; asking: boolean } | undefined {
    const redirect = redirectOf(err);
    if (redirect === undefined || this.membership === undefined) return undefined;
    const node = this.topologyMoved(redirect);
    return node === undefined || node === this ? undefined : { node, asking: redirect.kind === 'ASK' };
  }

  /**
   * Cluster mode: the node was retired from the topology (cluster.ts `apply`) and closed, so an
   * operation that waited on it goes once more to the key's owner now, as after a MOVED (protocol.ts).
   * Undefined while the node is in the topology, or when the key's slot has no owner now.
   */
  successorFor(key: string): CacheNode | undefined {
    if (!this.retired) return undefined;
    const owner = this.membership?.ownerOf(key);
    return owner === this ? undefined : owner;
  }

  /**
   * Cluster mode, for a write this node could not begin (down, or found demoted): the topology is
   * asked now, within `deadline`, and the key's owner returned if it is another primary (a failover
   * the container had not learnt yet: its writes go to the promoted replica instead of being refused
   * under strict). Undefined in shards mode, or when this node still owns the key's slot.
   */
  async ownerAfterRelearn(key: string, deadline: number): Promise<CacheNode | undefined> {
    if (this.membership === undefined) return undefined;
    try {
      await this.membership.relearn(deadline);
    } catch {
      return undefined;
    }
    const owner = this.membership.ownerOf(key);
    return owner === this ? undefined : owner;
  }

  /**
   * Strict writes and invalidations count once a replica has them: `WAIT 1` on this connection (it
   * covers everything this client wrote before it), bounded by `deadline`. True when a replica
   * acknowledged, or when the node reported none at any verification of its epoch (nothing can be
   * promoted in its place with less than it holds), or when the node refuses WAIT itself (below). One WAIT in flight per node: callers arriving meanwhile share
   * the next one, so a slow replica delays this connection's other commands by at most two bounds.
   */
  async replicated(deadline: number): Promise<boolean> {
    if (this.replicaCount === 0 || this.waitRefused) return true;
    try {
      return await this.waitForReplica(deadline);
    } catch (err) {
      if (!(err instanceof ReplyError) || !/^(ERR unknown command|NOPERM)/.test(errorMessage(err))) throw err;
      // The service keeps WAIT from its clients (ElastiCache Serverless: README, "Cluster mode and
      // ElastiCache Serverless"). Nothing can confirm a replica here: strict goes on without the
      // confirmation, as where the node reports no replica, rather than refusing every write.
      if (!this.waitRefused) logger.warn('CACHE_NODE_NO_WAIT', { cacheNode: this.address, error: errorMessage(err) });
      this.waitRefused = true;
      return true;
    }
  }

  /** The node refused WAIT itself (an unknown or forbidden command), for good. */
  private waitRefused = false;

  private async waitForReplica(deadline: number): Promise<boolean> {
    const bound = Math.floor((deadline - deadlineClock()) / 2);
    if (bound < 1) return false;
    if (this.waitInFlight === undefined) return (await this.sendWait(bound, deadline)) > 0;
    this.waitNext ??= this.waitInFlight.then(() => {
      this.waitNext = undefined;
      return this.sendWait(Math.max(1, Math.floor((deadline - deadlineClock()) / 2)), deadline);
    });
    return (await this.waitNext) > 0;
  }

  /**
   * The node answered a redirect: the map learns it, and the node is verified again before its entries
   * are trusted (verifyDue): the topology moved under it (a migration, or the node demoted, which may
   * be promoted back under another epoch on this same connection).
   */
  private topologyMoved(redirect: Redirect): CacheNode | undefined {
    this.lastVerified = Number.NEGATIVE_INFINITY;
    return this.membership?.moved(redirect);
  }

  /** The WAIT in flight (settled: it never rejects), if any. */
  private waitInFlight: Promise<unknown> | undefined;
  private waitNext: Promise<number> | undefined;

  private sendWait(bound: number, deadline: number): Promise<number> {
    const sent = within(this.address, deadline, () => this.client.wait(1, bound));
    const settled = sent.then(
      () => undefined,
      () => undefined,
    );
    this.waitInFlight = settled;
    void settled.then(() => {
      if (this.waitInFlight === settled) this.waitInFlight = undefined;
    });
    return sent;
  }

  /** The state machine's state (`settling` shows only in health()). */
  get status(): Exclude<NodeStatus, 'settling'> {
    this.refresh();
    return this.state;
  }

  /**
   * LEASE found the epoch's seal gone (evicted, or flushed by hand): verify again, which seals the
   * epoch anew and settles it. Until then reads take the lease path and fill nothing.
   */
  unsealed(): void {
    this.verified = false;
    void this.verify();
  }

  /**
   * Reads may trust the node's entries now (which entries: the epoch's, and of the map generations the
   * protocol accepts, protocol.ts readHit). Synchronous, so the hit path pays no extra await.
   */
  get readable(): boolean {
    this.refresh();
    return this.state === 'up' && this.verified && this.client.status === 'ready';
  }

  /** The state machine's clock (the map's trust is kept on it). */
  now(): number {
    return this.clock();
  }

  /** This container's map generation on the node is trusted (always, where there is no map): its writers may store. */
  get mapTrusted(): boolean {
    return this.map?.trusted(this.clock()) ?? true;
  }

  /** The tag of the epoch alone ('' in cluster mode): what another map's entries of this epoch start with. */
  get runTag(): string {
    return this.tag;
  }

  /**
   * Down only for invalidations owed here that it has not taken yet (cluster mode: a retired node's,
   * handed over, `owe`): it answers, so a write still begins on it (its begin sets its own key's entry
   * aside) and an invalidation is still sent; reads do not trust it until the repair. A write that
   * waited for the repair would be refused whenever more keys are handed over meanwhile, as writers
   * of the old primary keep doing for a moment after a failover.
   */
  get owesOnly(): boolean {
    return this.state === 'down' && this.owing;
  }
  private owing = false;

  /**
   * Cluster mode: invalidations of a retired node handed over to this one (cluster.ts `handOver`),
   * already in its dirty keys: down until they are delivered (R6), writes still taken (owesOnly), the
   * repair asked for now. A node already down for another failure stays as it was.
   */
  owe(reason: string): void {
    if (this.retired || (this.state === 'down' && !this.owing)) return;
    this.fail(new Error(reason), 'retired-dirty');
    this.owing = true;
    void this.probeNow();
  }

  /** Invalidations and fills may be sent (up or starting). */
  get writable(): boolean {
    this.refresh();
    return this.state !== 'down';
  }

  /**
   * Waits (at most the command timeout) for a connection that is still being made, as on a cold
   * start; true when commands can be sent.
   */
  async connected(): Promise<boolean> {
    if (this.verified && this.client.status === 'ready') return true;
    // Down only for what it owes (owe): its connection is waited for like an up node's.
    if ((this.state === 'down' && !this.owing) || this.closed) return false;
    if (this.client.status !== 'ready') await this.nextReady();
    if (this.verifying) await this.verifying;
    return this.verified && this.client.status === 'ready';
  }

  /**
   * A verification in flight on a live connection (a seal slot that moved, cluster.ts `apply`; a
   * probe), or undefined: each of its commands is bounded by the command timeout, so a writer may wait
   * for it apart from its own command's budget (protocol.ts beginOn). Never rejects.
   */
  verification(): Promise<unknown> | undefined {
    if (this.verifying === undefined || this.client.status !== 'ready') return undefined;
    return this.verifying.catch(() => false);
  }

  /** One wait per node for the connection, however many callers wait on it (bounded by the command timeout). */
  private readyWait: Promise<void> | undefined;

  private nextReady(): Promise<void> {
    this.readyWait ??= new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.client.off('ready', done);
        this.client.off('end', done);
        this.readyWait = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.settings.commandTimeoutMs);
      this.client.once('ready', done);
      // Closed (retired from the topology) while connecting: its waiters go on at once (successorFor).
      this.client.once('end', done);
    });
    return this.readyWait;
  }

  /**
   * Any failed command: the node is down until a probe says otherwise. No answer in time (NoAnswer) is
   * a suspicion, re-probed at once with back-off; any other failure (refused, closed, an error reply)
   * waits for the check interval.
   */
  fail(err: unknown, during: string): void {
    const redirect = this.isCluster ? redirectOf(err) : undefined;
    if (redirect !== undefined) {
      this.topologyMoved(redirect);
      return;
    }
    // Retired from the topology: nothing is asked of it again (its verification still ends in a failure).
    // Down only for what it owes (owe): a failure of its own makes it down as any other.
    if ((this.state === 'down' && !this.owing) || this.retired) return;
    this.owing = false;
    const now = this.clock();
    this.setState('down');
    this.lastCheck = now;
    this.failedOnConnection = this.connection;
    // A node that is a replica where the topology names a primary is in a failover's moment (promoted
    // any moment now, or demoted and about to be dropped from the topology): probed again soon too.
    this.suspect = err instanceof NoAnswer || err instanceof NotPrimary;
    this.suspectSince = now;
    this.reprobeMs = FIRST_REPROBE_MS;
    this.nextProbeAt = now + (this.suspect ? this.reprobeMs : this.settings.checkIntervalMs);
    logger.error('CACHE_NODE_DOWN', { cacheNode: this.address, during, error: errorMessage(err), suspect: this.suspect });
  }

  /**
   * An active check for /health: a function that only answers health questions sends no other
   * command, so it would never see a node fail. Bounded by the command timeout.
   */
  async check(): Promise<void> {
    this.refresh();
    if (this.state === 'down') {
      await this.probing;
      return;
    }
    try {
      if (!(await this.connected())) throw new Error(`not connected (${this.client.status})`);
      await this.bounded(() => this.client.ping());
    } catch (err) {
      this.fail(err, 'health-check');
    }
  }

  health(): NodeHealth {
    let status: NodeStatus = this.status;
    const now = this.clock();
    // Settling: the new epoch takes no fills yet, or this map's new generation here is not trusted yet.
    if (status === 'up' && (now < this.settleUntil || (this.map !== undefined && this.map.generation !== '' && !this.map.trusted(now)))) {
      status = 'settling';
    }
    return { id: this.id, address: this.address, status, since: new Date(this.since).toISOString(), dirtyKeys: this.dirty.size };
  }

  /** Time-driven transitions; called on every access, cheap when nothing is due. */
  refresh(): void {
    const now = this.clock();
    if (this.state === 'starting') {
      if (now - this.since >= this.settings.startCycles * this.settings.checkIntervalMs) this.setState('up');
    } else if (this.state === 'down') {
      if (this.probing === undefined && now >= this.nextProbeAt) this.startProbe();
    } else if (this.verified && this.verifying === undefined && now - this.lastVerified >= this.backgroundVerifyMs) {
      // A node that never fails a command can still change under its connection (a primary demoted
      // by a failover, a seal evicted): verified again, in the background, once per check interval
      // (cluster mode: twice, so a node in use is verified before its reads must wait, see verifyDue).
      void this.verify();
    }
  }

  private get backgroundVerifyMs(): number {
    return this.isCluster ? this.settings.checkIntervalMs / 2 : this.settings.checkIntervalMs;
  }

  /**
   * Cluster mode: the node was last verified a check interval ago or more (a container left idle,
   * frozen between invocations). A primary failed over and back keeps its connection and run_id, and
   * comes back under another epoch (its new replication id) holding entries it never saw invalidated
   * while it was a replica: its entries are trusted again only after it is verified (reverify), so the
   * first read after such an idle time waits for one verification (INFO and SEAL, shared by the reads
   * of that moment). A node in use is verified in the background every half interval and never waits.
   */
  get verifyDue(): boolean {
    return this.isCluster && this.verified && this.clock() - this.lastVerified >= this.settings.checkIntervalMs;
  }

  /** Verifies the node now (one verification, shared), within `deadline`; true when its epoch is known again. */
  async reverify(deadline: number): Promise<boolean> {
    return within(this.address, deadline, () => this.verify());
  }

  /**
   * For paths that would rather ask than give up (writes, stream invalidations): probe a down node now
   * instead of when its probe is due: at once when it only did not answer or its connection is back,
   * else at most once a second. One probe at a time, bounded by the command timeout; callers share it.
   */
  async probeNow(): Promise<void> {
    if (this.state !== 'down') return;
    // A suspect's connection being made again (a replica found in a failover's moment is given up for a
    // new connection, verifyEpoch; a silent one) is waited for, within the command timeout: the probe
    // needs it, and a write in that moment would otherwise be refused at once.
    if (this.suspect && this.probing === undefined && !this.closed && this.client.status !== 'ready') await this.nextReady();
    if (this.state !== 'down') return;
    const due = this.suspect || this.client.status === 'ready' || this.clock() >= Math.min(this.nextProbeAt, this.lastCheck + 1000);
    if (this.probing === undefined && due) this.startProbe();
    await this.probing;
  }

  private startProbe(): void {
    this.probing = this.probe().finally(() => {
      this.probing = undefined;
    });
  }

  /**
   * The check of a down node: reachable, epoch verified (R9), the invalidations this container owes it
   * delivered (R6), then trusted again: at once (`up`) when it had only stalled (same connection, same
   * run_id), else `starting`. A failure leaves it down until the next probe: soon for a node that still
   * does not answer (and, after a few silent probes, on a new connection: a black-holed socket never
   * answers), after the check interval for any other failure.
   */
  async probe(): Promise<boolean> {
    this.lastCheck = this.clock();
    const runIdBefore = this.runId;
    try {
      if (this.client.status !== 'ready') throw new Error(`not connected (${this.client.status})`);
      if (!(await this.verify())) throw this.lastVerifyError ?? new Error('epoch not verified');
      await this.repairDirty();
      // Nothing may go dirty between this check and the transition (no await between them).
      if (this.dirty.size > 0 || this.dirty.needsFlush) throw new StillOwed('keys went dirty during the repair');
      const stalledOnly = this.suspect && this.connection === this.failedOnConnection && this.runId === runIdBefore;
      this.setState(stalledOnly || this.settings.startCycles === 0 ? 'up' : 'starting');
      return true;
    } catch (err) {
      this.afterFailedProbe(err);
      return false;
    }
  }

  private afterFailedProbe(err: unknown): void {
    if (!(err instanceof StillOwed)) this.owing = false;
    if (err instanceof NoAnswer && this.suspect && this.lastCheck - this.suspectSince >= SILENT_MS_BEFORE_RECONNECT) {
      // A silent network drop leaves the socket open and mute until TCP gives up (many minutes): a new
      // connection may reach the node now. The node then goes through starting, as after any reconnect.
      // Later than any ordinary stall (a paused process, a slow script), which keeps its connection.
      this.suspectSince = this.lastCheck;
      if (!this.closed) this.client.disconnect(true);
    }
    // A suspect stays one, re-probed ever later up to the check interval: a cold connection that is
    // still being made, or a node that answers only now and then, is tried again soon.
    if (this.suspect) this.reprobeMs = Math.min(this.reprobeMs * 2, this.settings.checkIntervalMs);
    this.nextProbeAt = this.lastCheck + (this.suspect ? this.reprobeMs : this.settings.checkIntervalMs);
    logger.warn('CACHE_NODE_PROBE_FAILED', { cacheNode: this.address, error: errorMessage(err) });
  }

  /** Why the last verification failed, for the probe that asked for it. */
  private lastVerifyError: unknown;
  /** When the epoch was last verified (state machine clock): an `up` node is verified again each check interval. */
  private lastVerified = 0;

  /**
   * Learns the server's run_id and seals its epoch (SEAL script): from then on this client tags what
   * it writes with the epoch and trusts only entries of it, so data the node came up with (a dump, a
   * promotion) is never trusted, and nothing is flushed. In cluster mode the epoch is the run_id and the
   * replication id together (a primary demoted and promoted again keeps its run_id, not its replication
   * id), and its seal carries the hash tag of a slot the node owns (cluster.ts picks it).
   */
  private verify(): Promise<boolean> {
    // One verification at a time: a probe and a reconnection may both ask for one.
    this.verifying ??= this.verifyEpoch().finally(() => {
      this.verifying = undefined;
    });
    return this.verifying;
  }

  /**
   * SEAL of the epoch: [keys (-1 when the seal was there already), the settle left]. Cluster mode: the
   * seal's slot on the move (a migration took the node's lowest slot: ASK once the seal key left, MOVED
   * before this client learnt the move) is no failure of the node, which answered INFO and whose epoch
   * is known from it: the epoch settles here for the whole settle time, as under a new seal, and the
   * map learns the move (the next seal goes where the node's lowest slot is then, cluster.ts `apply`).
   */
  private async seal(seal: string): Promise<[number, number]> {
    const settleMs = this.settings.settleMs ?? 60_000;
    try {
      return await this.bounded(() => this.client.wtSeal(seal, settleMs));
    } catch (err) {
      const redirect = this.membership === undefined ? undefined : redirectOf(err);
      if (redirect === undefined) throw err;
      this.membership?.moved(redirect);
      logger.warn('CACHE_NODE_SEAL_MOVING', { cacheNode: this.address, redirect: `${redirect.kind} ${redirect.slot}`, settleMs });
      return [-1, settleMs];
    }
  }

  /**
   * The data set's marker in `slot` (`SET NX GET`: made with `ours` when there is none). A migration of
   * the slot under way that moved the marker already (ASK): the slot's keys are where the redirect
   * names, so the marker is asked there (ASKING first, in the same turn), as any redirect is followed.
   */
  private async marker(slot: number, ours: string): Promise<unknown> {
    const key = epochMarkerKey(tagForSlot(slot));
    try {
      return await this.bounded(() => this.client.call('SET', key, ours, 'NX', 'GET'));
    } catch (err) {
      const redirect = redirectOf(err);
      const target = redirect?.kind === 'ASK' ? this.membership?.moved(redirect) : undefined;
      if (target === undefined || target === this || target.client.status !== 'ready') throw err;
      target.client.asking().catch(() => undefined);
      return await target.bounded(() => target.client.call('SET', key, ours, 'NX', 'GET'));
    }
  }

  private async verifyEpoch(): Promise<boolean> {
    try {
      // The default sections: `server` (run_id) and `replication` (role, replication id, replicas).
      let info = '';
      try {
        info = await this.bounded(() => this.client.info());
      } catch (err) {
        // Cluster mode: a service may refuse INFO (an error reply); the epoch marker stands in (below).
        if (this.membership === undefined || !(err instanceof ReplyError)) throw err;
      }
      let runId = /run_id:([0-9a-f]+)/.exec(info)?.[1];
      if (!runId && this.membership === undefined) throw new Error('INFO carries no run_id');
      const role = /^role:(\w+)/m.exec(info)?.[1];
      if (role !== undefined && role !== 'master') {
        // A primary demoted by a failover keeps its clients' connections and its run_id, and resyncs
        // from the new primary: never trusted. A new connection (the endpoint's name now points at
        // the new primary) is the way back; in cluster mode the map learns the new primary.
        if (!this.closed) this.client.disconnect(true);
        this.membership?.moved(undefined);
        throw new NotPrimary(`the node is a replica (role:${role}): its primary has moved`);
      }
      let epoch = runId ?? '';
      let seal: string | undefined = sealKey(epoch);
      const replId = /^master_replid:([0-9a-f]+)/m.exec(info)?.[1] ?? '';
      let slot = this.membership === undefined ? undefined : await this.membership.sealSlot();
      if (this.membership !== undefined && slot === undefined) {
        // A migration's target that owns no slot yet (a new primary's first slot, reached by ASK): no
        // slot holds its seal, and INFO tells its epoch: it settles here for the whole settle time, as
        // under a new seal, and is sealed once it owns a slot (cluster.ts apply).
        if (!runId || !this.membership.importing()) throw new Error('the node owns no slot of the cluster');
        epoch = clusterEpoch(runId, replId);
        seal = undefined;
      } else if (this.membership !== undefined && slot !== undefined) {
        if (!runId) {
          // A service that hides run_id (ElastiCache Serverless may, README): the data set's own marker,
          // made by the first client that finds none (no TTL: volatile-* never evicts it). It goes with
          // the data, so a cache that lost its data is a new epoch; a failover that keeps it is not seen.
          const ours = randomToken();
          let found: unknown;
          try {
            found = await this.marker(slot, ours);
          } catch (err) {
            // MOVED: the marker's slot (the lowest) left the node, a migration this client has not learnt
            // yet: the topology is learnt, and the marker asked once in the node's lowest slot now (a new
            // marker there is a new epoch: a settle, never a stale read).
            const redirect = redirectOf(err);
            if (redirect?.kind !== 'MOVED') throw err;
            this.membership.moved(redirect);
            // A topology no node answered in time is no failure of this node: the redirect is (below).
            await this.membership.relearn(deadlineClock() + this.settings.commandTimeoutMs, true).catch(() => undefined);
            const now = await this.membership.sealSlot();
            if (now === undefined || now === slot) throw err;
            slot = now;
            found = await this.marker(slot, ours);
          }
          runId = typeof found === 'string' ? found : ours;
        }
        epoch = clusterEpoch(runId, replId);
        seal = clusterSealKey(tagForSlot(slot), epoch);
      }
      const previousRunId = this.runId;
      // Always asked (one call per connection or probe): the seal may have been evicted since.
      const [keys, settleMs] = seal === undefined ? [-1, this.settings.settleMs ?? 60_000] : await this.seal(seal);
      this.runId = runId;
      this.epochSeal = seal;
      const sameEpoch = this.tag === epochTag(epoch);
      this.tag = epochTag(epoch);
      // Cluster mode only (shards mode's epochs already tell a promoted replica, and its writes do not wait).
      // An epoch seen with a replica keeps waiting for one once none is linked: that replica may have been
      // promoted in its place while this primary has not heard of it (a partition of the cluster bus, a
      // pause), and a fence it alone holds fences nothing for the new owner's readers. Strict writes of
      // its slots are refused until a replica is linked again or its epoch changes.
      const linked = this.membership === undefined ? 0 : Number(/^connected_slaves:(\d+)/m.exec(info)?.[1] ?? '0');
      this.replicaCount = sameEpoch ? Math.max(this.replicaCount, linked) : linked;
      this.settleUntil = this.clock() + settleMs;
      this.lastVerified = this.clock();
      if (keys >= 0) {
        logger.warn('CACHE_NODE_NEW_EPOCH', { cacheNode: this.address, previousRunId, runId, keys, settleMs });
      }
      this.verified = true;
      this.lastVerifyError = undefined;
      return true;
    } catch (err) {
      this.verified = false;
      this.lastVerifyError = err;
      this.fail(err, 'verify');
      return false;
    }
  }

  /**
   * Delivers what this container owes the node (R6): each dirty key invalidated, or past the limit the
   * node emptied and settled (FLUSH script: the same settle rule as a new epoch). Repeats while keys
   * go dirty under it, a few rounds at most.
   */
  private async repairDirty(): Promise<void> {
    for (let round = 0; round < REPAIR_ROUNDS; round++) {
      const todo = this.dirty.snapshot();
      if (!todo.flush && todo.keys.length === 0) return;
      if (todo.flush) {
        const settleMs = this.settings.settleMs ?? 60_000;
        const seal = this.epochSeal;
        if (seal === undefined) throw new Error('the node has no verified epoch to flush');
        await this.bounded(() => this.client.wtFlush(seal, settleMs));
        this.settleUntil = this.clock() + settleMs;
      } else {
        await Promise.all(
          todo.keys.map((k) => this.bounded(() => this.client.wtInvalidate(k, randomToken())).catch((err) => this.invalidateMoved(k, err))),
        );
      }
      this.dirty.clear(todo);
      logger.info('CACHE_DIRTY_REPAIRED', { cacheNode: this.address, keys: todo.keys.length, flushed: todo.flush });
    }
  }

  /**
   * Cluster mode: a dirty key this node no longer holds (MOVED, ASK) took its entry, tagged with this
   * node's epoch, to the node the redirect names. That tag is trusted again the moment the slot comes
   * back here, so the invalidation is still owed, where the key is now: delivered there (ASKING first
   * for ASK), or, when that node cannot take it, handed to that node's own dirty keys (repaired before
   * it is trusted again, and it is marked down for that). Moved once more: kept here, and tried again at
   * the next probe, against the topology learnt meanwhile. After a MOVED this node is also checked for
   * keys of the slot it lost (strayHeld).
   */
  private async invalidateMoved(key: string, err: unknown): Promise<void> {
    const next = this.redirected(err);
    if (next === undefined) throw err;
    const { node } = next;
    try {
      if (!(await this.bounded(() => node.connected()))) throw new Error(`not connected (${node.client.status})`);
      // ASKING holds for the connection's next command only: sent in the same turn as the invalidation.
      if (next.asking) node.client.asking().catch(() => undefined);
      await node.bounded(() => node.client.wtInvalidate(key, randomToken()));
    } catch (again) {
      if (redirectOf(again) !== undefined) throw again;
      node.dirty.add(key, `repair-redirected from ${this.address}: ${errorMessage(again)}`);
      node.fail(again, 'repair-redirected');
    }
    if (!next.asking) await this.strayHeld(key);
  }

  /**
   * Cluster mode, a repair this node answered with MOVED: the slot left it, maybe without its keys
   * (`CLUSTER DELSLOTS` deletes none), and its entry, tagged with this node's unchanged epoch, is trusted
   * again if the slot comes back. As for a stream invalidation (protocol.ts `invalidateStray`,
   * ARCHITECTURE.md "A slot with no owner"): while this node holds keys of the slot and refuses the
   * invalidation, the key stays owed here (the repair throws: the node stays down for this container),
   * and it is delivered once the slot is back here, or done with once those keys are gone.
   */
  private async strayHeld(key: string): Promise<void> {
    const slot = slotOf(key);
    const held = Number(await this.bounded(() => this.client.call('CLUSTER', 'COUNTKEYSINSLOT', String(slot))));
    if (!(held > 0)) return;
    try {
      // A migration's target (importing) takes it after ASKING, sent in the same turn.
      this.client.asking().catch(() => undefined);
      await this.bounded(() => this.client.wtInvalidate(key, randomToken()));
    } catch (err) {
      // ASK: the node still owns the slot, migrating it away, and no longer holds the key.
      if (redirectOf(err)?.kind === 'ASK') return;
      throw new Error(
        `holds ${held} key(s) of slot ${slot}, which it does not own (${errorMessage(err)}): the repair waits until the slot is back here or its keys are gone`,
        {
          cause: err,
        },
      );
    }
  }

  /**
   * HGET `key` `field`, bounded by `deadline` (G3): the hit path, so the cheapest way ioredis offers.
   * On a single node the command goes straight to the connection (no auto-pipeline: no pipeline,
   * no promise and callback around each command), and the socket is corked until the end of this
   * event-loop turn, so the reads of concurrent requests still leave in one write, as auto-pipelining
   * sends them. The deadline is kept by the node's DeadlineQueue (one timer for all reads in flight,
   * not one per call). As with any command: no offline queue (a read while disconnected fails at
   * once). `now`: the caller's deadlineClock() (lib/clock.ts) when it just took one (the hit path reads the clock once).
   */
  read(key: string, field: string, deadline: number, now = deadlineClock()): Promise<string | null> {
    const client = this.client;
    const ms = deadline - now;
    if (ms <= 0) return Promise.reject(new BudgetSpent());
    const stream = client.stream as Redis['stream'] | undefined;
    if (this.corked === undefined && stream !== undefined && client.status === 'ready') {
      stream.cork();
      this.corked = stream;
      setImmediate(this.uncork);
    }
    const command = new Command('hget', [key, field], { replyEncoding: 'utf8' });
    client.sendCommand(command);
    this.reads.add(command, deadline, ms);
    return command.promise as Promise<string | null>;
  }

  private readonly uncork = (): void => {
    const stream = this.corked;
    this.corked = undefined;
    stream?.uncork();
  };

  /** A call of the node's own (checks, epochs, repairs), bounded by the command timeout. */
  private bounded<T>(op: () => Promise<T>): Promise<T> {
    return within(this.address, deadlineClock() + this.settings.commandTimeoutMs, op);
  }

  private setState(next: Exclude<NodeStatus, 'settling'>): void {
    if (next !== 'down') this.owing = false;
    if (next === this.state) return;
    this.state = next;
    this.since = this.clock();
    this.settings.metrics?.count('NodeStatusChanges');
    logger.info('CACHE_NODE_STATUS', { cacheNode: this.address, status: next });
  }

  /** Closed by its owner: never reconnected again (a probe or a verification still in flight would). */
  private closed = false;
  /** Closed because it left the topology (cluster mode), not because the container shuts down. */
  private retired = false;

  /** Cluster mode: the node owns no slot any more (cluster.ts `apply`): closed, its keys' operations go to their owners now. */
  retire(): Promise<void> {
    this.retired = true;
    return this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.client.disconnect();
    this.reads.close();
  }
}
