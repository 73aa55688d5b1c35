import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { CacheNode } from '../../lib/cache/node.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import type { ResolvedKey } from '../../lib/keys.ts';
import type { StreamRecordLike } from '../../lib/stream/consumer.ts';
import { toAttributes } from '../../lib/codec.ts';
import { rawDynamoClient } from './stack.ts';

/**
 * A DynamoDB client whose requests a test can fail on purpose: before they are sent (nothing
 * committed) or after the answer came back (committed, but the caller sees an error, as with a lost
 * response or a timeout). DynamoDB Local cannot produce these faults itself.
 */
export function faultyDynamoClient(): { client: DynamoDBClient; faults: { before: string[]; after: string[] }; calls: string[] } {
  const client = rawDynamoClient();
  const faults = { before: [] as string[], after: [] as string[] };
  const calls: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = context.commandName ?? '?';
      calls.push(command);
      const i = faults.before.indexOf(command);
      if (i !== -1) {
        faults.before.splice(i, 1);
        throw Object.assign(new Error(`injected ${command} failure before sending`), {
          name: 'InternalServerError',
          $metadata: { httpStatusCode: 500 },
        });
      }
      const out = await next(args);
      const j = faults.after.indexOf(command);
      if (j !== -1) {
        faults.after.splice(j, 1);
        throw Object.assign(new Error(`injected ${command} timeout after commit`), { name: 'TimeoutError' });
      }
      return out;
    },
    { step: 'initialize', name: 'faultInjection' },
  );
  return { client, faults, calls };
}

/** A stream record in Lambda's event shape for an item's key (with NEW_IMAGE, `newImage` as its image). */
export function streamRecord(
  cache: ItemCache,
  rk: ResolvedKey,
  seq: string,
  view: 'KEYS_ONLY' | 'NEW_IMAGE' = 'KEYS_ONLY',
  newImage?: Record<string, unknown>,
): StreamRecordLike {
  const physical = cache.tables.physicalName(rk.table);
  const keys = JSON.parse(
    JSON.stringify(toAttributes(rk.key), (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v)),
  );
  return {
    eventID: `e${seq}`,
    eventName: 'MODIFY',
    eventSourceARN: `arn:aws:dynamodb:us-east-1:000000000000:table/${physical}/stream/2026-01-01T00:00:00.000`,
    dynamodb: {
      Keys: keys,
      SequenceNumber: seq,
      StreamViewType: view,
      ...(view === 'NEW_IMAGE' && newImage ? { NewImage: newImage } : {}),
    },
  };
}

/** Redis fields of an entry, straight from the node. */
export async function entryFields(cache: ItemCache, rk: ResolvedKey): Promise<Record<string, string>> {
  const node = cache.nodeFor(rk);
  if (!node) throw new Error('no node');
  return node.client.hgetall(rk.redisKey);
}

/** Ends the settle of the node's current epoch, as the passing of the fence time would (scripts.ts SEAL). */
export async function endSettle(node: CacheNode): Promise<void> {
  await node.client.set(node.sealKeyFor(''), '0');
}

/**
 * Writes `data` as an item's entry straight into its node, tagged with the node's current epoch (as a
 * faulty or tampered node, or a stale one, would hold it): the library trusts it like its own.
 */
export async function plantEntry(cache: ItemCache, rk: ResolvedKey, data: string): Promise<void> {
  const node = cache.nodeFor(rk);
  if (!node) throw new Error('no node');
  await node.client.hset(rk.redisKey, 'd', node.epochTag + data);
}
