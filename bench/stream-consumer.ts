/**
 * The Streams consumer, running as in production: DynamoDB Local's stream of the bench's table fed to
 * `invalidateStreamRecords` by the local stack's feed (infra/local/stream-feed.ts, the deploy's
 * mapping settings), in a library instance of its own (a container of its own). It starts at the
 * stream's LATEST position (the items the bench loads before are not replayed), polls as Lambda does
 * (about four times a second), and `caughtUp()` waits until every record written before the call was
 * handled: it writes a sentinel item and waits for its record (one shard per table in DynamoDB Local,
 * delivered in order).
 */
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { localDynamoClientConfig } from '../infra/local/dynamodb-local.ts';
import { StreamFeed } from '../infra/local/stream-feed.ts';
import { invalidateStreamRecords } from '../lib/stream/consumer.ts';
import { ready, type BenchStack } from './setup.ts';

export interface RunningConsumer {
  feed: StreamFeed;
  /** Records handled, and of those, entries the consumer kept (issue 13) and entries it invalidated. */
  stats: { records: number };
  caughtUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startConsumer(stack: BenchStack): Promise<RunningConsumer> {
  const consumer = stack.cache();
  await ready(consumer);
  const seen = new Set<string>();
  const stats = { records: 0 };
  const feed = new StreamFeed({
    client: localDynamoClientConfig(stack.dynamoEndpoint),
    tables: [stack.physicalTable],
    handler: async (event) => {
      const answer = await invalidateStreamRecords(consumer, event.Records);
      stats.records += event.Records.length;
      for (const r of event.Records) {
        const id = r.dynamodb?.Keys?.userId?.S;
        if (id?.startsWith('sentinel-')) seen.add(id);
      }
      return answer;
    },
    mapping: { startingPosition: 'LATEST' },
  });
  await feed.start();
  let n = 0;
  const caughtUp = async (timeoutMs = 60_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    // A sentinel written while DynamoDB Local hands out a fresh iterator can be skipped (LATEST):
    // another one is written every two seconds until one comes through.
    while (Date.now() < end) {
      const id = `sentinel-${++n}`;
      await stack.dynamo.send(new PutItemCommand({ TableName: stack.physicalTable, Item: { userId: { S: id } } }));
      const until = Math.min(end, Date.now() + 2000);
      while (Date.now() < until) {
        if (seen.has(id)) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    throw new Error('the stream consumer did not catch up');
  };
  return { feed, stats, caughtUp, stop: () => feed.stop() };
}
