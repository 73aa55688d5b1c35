/**
 * `node --import tsx bench/drop-in.ts [--iterations N] [--repeats N] [--dynamodb-endpoint URL]`
 *
 * The drop-in client's hit (withCache(docClient).send(new GetCommand(…))) against the library's own
 * `get` of the same cached items, at concurrency 1, sampled side by side (pairedRun: each iteration
 * runs both, in rotating order). The figure is the median over repeats of the p50 ratio
 * drop-in / library (target ≤ 1.1: issue 15); every answer is checked to be a hit of the right item.
 */
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '5000' },
    repeats: { type: 'string', default: '5' },
    'dynamodb-endpoint': { type: 'string' },
  },
  strict: true,
});
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { DynamoDBDocumentClient, GetCommand } = await import('@aws-sdk/lib-dynamodb');
const { withCache } = await import('../lib/index.ts');
const { TABLE, loadItems, ready, startStack, userAttributes } = await import('./setup.ts');
const { median, pairedRun } = await import('./stats.ts');

const log = (m: string): void => void process.stderr.write(`[drop-in] ${m}\n`);
const iterations = Number(values.iterations);
const repeats = Number(values.repeats);
const KEYS = 200;

const stack = await startStack(log, values['dynamodb-endpoint']);
try {
  await loadItems(
    stack.dynamo,
    stack.physicalTable,
    Array.from({ length: KEYS }, (_, i) => userAttributes(`u${i}`, i)),
  );
  const cache = stack.cache();
  await ready(cache);
  const client = withCache(DynamoDBDocumentClient.from(stack.dynamo), { cache });
  const keys = Array.from({ length: KEYS }, (_, i) => ({ userId: `u${i}` }));
  // Fill every entry, and let the drop-in meet its read shape once (DynamoDB answers that first read).
  for (const key of keys) {
    await cache.get(TABLE, key);
    await client.send(new GetCommand({ TableName: stack.physicalTable, Key: key }));
  }
  let anomalies = 0;
  const ops = [
    {
      name: 'library.get',
      op: async (i: number) => {
        const r = await cache.get(TABLE, keys[i % KEYS]);
        if (r.cache !== 'hit') anomalies++;
      },
    },
    {
      name: 'drop-in.GetCommand',
      op: async (i: number) => {
        const key = keys[i % KEYS] as { userId: string };
        const out = await client.send(new GetCommand({ TableName: stack.physicalTable, Key: key }));
        if (out.Item?.userId !== key.userId || '_version' in (out.Item ?? {})) anomalies++;
      },
    },
  ];
  await pairedRun(Math.min(iterations, 1000), ops); // warm-up, thrown away
  const ratios: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const stats = await pairedRun(iterations, ops);
    const lib = stats['library.get'];
    const drop = stats['drop-in.GetCommand'];
    if (lib === undefined || drop === undefined) throw new Error('a measurement is missing');
    ratios.push(drop.p50Us / lib.p50Us);
    log(
      `repeat ${r + 1}: library.get p50 ${lib.p50Us.toFixed(1)} µs p99 ${lib.p99Us.toFixed(1)} µs; ` +
        `drop-in p50 ${drop.p50Us.toFixed(1)} µs p99 ${drop.p99Us.toFixed(1)} µs; ratio ${(drop.p50Us / lib.p50Us).toFixed(3)}`,
    );
  }
  const result = { iterations, repeats, ratios, medianRatio: median(ratios), target: 1.1, anomalies };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (anomalies > 0) process.exitCode = 1;
} finally {
  await stack.stop();
}
