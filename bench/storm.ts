/**
 * Hot-key storm (G5): one cached key is invalidated (as the stream consumer does after an
 * out-of-band change), and at once `size` concurrent gets of it arrive, spread over several library
 * instances (Lambda containers with their own clients). Figure: how many reads reached DynamoDB,
 * counted by a middleware on every container's DynamoDB client. Median over rounds.
 */
import { TABLE, countingDynamoClient, ready, type BenchStack, type ReadCounter } from './setup.ts';
import { median } from './stats.ts';

export interface StormCounts {
  size: number;
  rounds: number;
  containers: number;
}

export interface StormResult {
  /** DynamoDB reads per round. */
  reads: number[];
  median: number;
  max: number;
  /** Where the answers came from, over all rounds. */
  sources: Record<string, number>;
  wrongAnswers: number;
}

export async function runStorm(stack: BenchStack, counts: StormCounts, log: (m: string) => void): Promise<StormResult> {
  const counters: ReadCounter[] = [];
  const containers = Array.from({ length: counts.containers }, () => {
    const { client, counter } = countingDynamoClient(stack.dynamoEndpoint, false);
    counters.push(counter);
    return stack.cache({}, { dynamoClient: client });
  });
  const consumer = stack.cache();
  for (const c of [...containers, consumer]) await ready(c);
  const key = { userId: 'storm-hot' };
  const rk = consumer.resolve(TABLE, key);
  const written = await consumer.put(TABLE, { ...key, name: 'hot', score: 1 });
  // Warm containers: connected, epochs verified, scripts loaded.
  for (let i = 0; i < 3; i++) await Promise.all(containers.map((c) => c.get(TABLE, key)));

  const reads: number[] = [];
  const sources: Record<string, number> = {};
  let wrongAnswers = 0;
  for (let round = 0; round < counts.rounds; round++) {
    await consumer.invalidate(rk);
    counters.forEach((c) => c.reset());
    const results = await Promise.all(
      Array.from({ length: counts.size }, (_, i) => (containers[i % containers.length] as (typeof containers)[number]).get(TABLE, key)),
    );
    for (const r of results) {
      sources[r.cache] = (sources[r.cache] ?? 0) + 1;
      if (r.version !== written.version) wrongAnswers++;
    }
    reads.push(counters.reduce((n, c) => n + c.getItem + c.batchKeys, 0));
  }
  log(`storm: DynamoDB reads per round ${reads.join(', ')}`);
  return { reads, median: median(reads), max: Math.max(...reads), sources, wrongAnswers };
}
