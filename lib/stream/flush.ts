import type { CacheNode } from '../cache/node.ts';
import { randomToken } from '../cache/tokens.ts';
import { CacheUnavailableError, errorMessage } from '../errors.ts';
import type { ItemCache } from '../item-cache.ts';
import { logger } from '../log.ts';

/** Keys a SCAN step asks for: large enough to be quick, small enough not to hold a node. */
const SCAN_COUNT = 1000;

/**
 * Invalidates every cached entry of the named tables (logical names), on every node: what a
 * stream replacement calls for (changing a table's stream view type gives it a new stream, and the
 * records written between the old stream's last one read and the new mapping's start reach no
 * consumer; README, Deploy), on every node of every live shard map. Each entry (`<physical table>:…:t`, lib/keys.ts) found by SCAN gets
 * `INVALIDATE`, as a stream record would: `d` and any lease go, a writer's fence stays. Refuses
 * before touching anything when a name is not a declared table or a node cannot be reached; a
 * node lost midway throws too, and running it again is harmless.
 */
export async function invalidateTableEntries(cache: ItemCache, tables: readonly string[]): Promise<{ entries: number }> {
  const prefixes = tables.map((name) => `${cache.tables.physicalName(cache.table(name))}:`);
  // Every node of every live shard map (lib/cache/maps.ts): another map's entries are entries too.
  await cache.shards.view?.fresh();
  const nodes = cache.shards.view?.nodes() ?? cache.shards.nodes;
  await cache.checkHealth();
  const away = nodes.filter((n) => !n.writable);
  if (away.length > 0) {
    throw new CacheUnavailableError(`cache node ${away.map((n) => n.address).join(', ')} cannot be reached: nothing was invalidated`);
  }
  let entries = 0;
  for (const node of nodes) {
    for (const prefix of prefixes) {
      try {
        entries += await invalidateMatching(node, prefix);
      } catch (err) {
        throw new CacheUnavailableError(`cache node ${node.address} failed midway (${errorMessage(err)}); run it again`, { cause: err });
      }
    }
  }
  logger.info('TABLE_ENTRIES_INVALIDATED', { tables: [...tables], entries });
  return { entries };
}

/** One node's entries of a table (in cluster mode each primary is a node: SCAN sees its own slots). */
async function invalidateMatching(node: CacheNode, prefix: string): Promise<number> {
  let count = 0;
  let cursor = '0';
  do {
    // Table names hold only letters, digits, _ . - (lib/tables.ts): nothing a glob would read.
    const [next, keys] = await node.client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', SCAN_COUNT);
    cursor = next;
    const entries = keys.filter((k) => k.endsWith(':t'));
    await Promise.all(entries.map((k) => node.client.wtInvalidate(k, randomToken())));
    count += entries.length;
  } while (cursor !== '0');
  return count;
}
