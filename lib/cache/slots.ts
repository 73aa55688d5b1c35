import calculateSlot from 'cluster-key-slot';

/** Redis Cluster's key space: 16384 hash slots. */
export const SLOTS = 16384;

/** The slot of a key, as every Redis Cluster node computes it (CRC16 of the key or of its hash tag). */
export const slotOf = (key: string): number => calculateSlot(key);

const tags = new Map<number, string>();

/**
 * The shortest base-36 counter whose hash tag lands in `slot`: a key holding `{tag}` is stored in that
 * slot. Found by search (about 16,000 tries on average), once per slot and cached; only the few slots
 * that carry an epoch's seal ever ask (node.ts).
 */
export function tagForSlot(slot: number): string {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS) throw new Error(`not a cluster slot: ${slot}`);
  let tag = tags.get(slot);
  if (tag !== undefined) return tag;
  for (let n = 0; ; n++) {
    const candidate = n.toString(36);
    if (calculateSlot(candidate) === slot) {
      tag = candidate;
      break;
    }
  }
  tags.set(slot, tag);
  return tag;
}

/** A cluster node's redirection: MOVED (the slot has a new owner) or ASK (this key is being migrated). */
export interface Redirect {
  kind: 'MOVED' | 'ASK';
  slot: number;
  /** host:port of the node to ask. */
  address: string;
}

/** The redirection an error reply carries (`MOVED 3999 10.0.0.2:6379`, `ASK …`), or undefined. */
export function redirectOf(err: unknown): Redirect | undefined {
  if (!(err instanceof Error)) return undefined;
  const m = /^(MOVED|ASK) (\d+) (\S+)/.exec(err.message);
  if (!m) return undefined;
  return { kind: m[1] as Redirect['kind'], slot: Number(m[2]), address: m[3] as string };
}
