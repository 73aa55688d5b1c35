/**
 * G2 by situation (CONSISTENCY.md, "G2 by situation"): `node --import tsx consistency/g2-situations.ts`
 * (about 6 minutes). Real redis-servers, DynamoDB Local and its streams, the repository's StreamFeed
 * with the deploy's mapping settings, the consumer, the replayer and the sweep as separate ItemCache
 * instances, the sweep on the deploy's 60 s schedule with its back-off; faults are TCP proxy cuts.
 * Prints one line per situation.
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb';
const R = dirname(dirname(fileURLToPath(import.meta.url)));
const { startDynamoDbLocal } = await import(`${R}/test/helpers/dynamodb-local.ts`);
const ddb = await startDynamoDbLocal();
process.env.DYNAMODB_ENDPOINT = ddb.endpoint;
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
// The stream functions' metrics (EMF lines on stdout) would interleave with the report.
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const { startStack } = await import(`${R}/test/helpers/stack.ts`);
const { TcpProxy } = await import(`${R}/test/helpers/tcp-proxy.ts`);
const { StreamFeed } = await import(`${R}/infra/local/stream-feed.ts`);
const { localDynamoClientConfig } = await import(`${R}/test/helpers/dynamodb-local.ts`);
const { createStreamHandler } = await import(`${R}/functions/stream.ts`);
const { createReplayHandler } = await import(`${R}/functions/replay.ts`);
const { createSweepHandler } = await import(`${R}/functions/sweep.ts`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (m: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const summary = (xs: number[]) => `n=${xs.length} p50 ${pct(xs, 50)} ms, p99 ${pct(xs, 99)} ms, max ${Math.max(...xs)} ms`;

const stack = await startStack({ shards: 3, parking: true });
const [A, B] = [stack.servers[0]!, stack.servers[1]!];
// Two sets of proxies: the consumer's container's, and everyone else's (a partition is a cut).
const proxies = await Promise.all(stack.servers.map((s: any) => TcpProxy.start(s.port)));
const others = await Promise.all(stack.servers.map((s: any) => TcpProxy.start(s.port)));
const consumerNodes = proxies.map((p: any) => p.url).join(',');
const otherNodes = { CACHE_NODES: others.map((p: any) => p.url).join(',') };
const cacheOf = () => stack.cache(otherNodes);
const writer = cacheOf();
const consumer = stack.cache({ CACHE_NODES: consumerNodes });
const replayer = cacheOf();
const sweepCache = cacheOf();
const feed = new StreamFeed({
  client: localDynamoClientConfig(ddb.endpoint),
  tables: stack.tables.map((t: any) => stack.prefix + t.name),
  handler: createStreamHandler(consumer),
  subscriptions: [{ table: stack.parkingTable, handler: createReplayHandler(replayer) }],
});
await feed.start();
const sweep = createSweepHandler(sweepCache);
let sweeps = 0;
const sweeper = setInterval(() => {
  sweeps++;
  sweep().then((r: any) => log(`sweep #${sweeps}: ${JSON.stringify(r)}`));
}, 60_000);

const usersOn = (server: any, tag: string, n: number) => {
  const out: { userId: string }[] = [];
  for (let i = 0; out.length < n; i++) {
    const k = { userId: `${tag}-${i}` };
    if (writer.nodeFor(writer.resolve('users', k))?.address.endsWith(`:${others[stack.servers.indexOf(server)].port}`)) out.push(k);
  }
  return out;
};
const writeAround = (userId: string, v: string) =>
  stack.dynamo.send(
    new PutItemCommand({
      TableName: `${stack.prefix}users`,
      Item: { userId: { S: userId }, v: { S: v }, _version: { N: String(Date.now()) } },
    }),
  );
async function cacheOld(keys: { userId: string }[]) {
  for (const k of keys) await writer.put('users', { ...k, v: 'old' });
  // the puts' own records applied: the feed delivered nothing new for 1.5 s
  for (let last = -1; last !== feed.stats.records; ) {
    last = feed.stats.records;
    await sleep(1500);
  }
  const r = cacheOf();
  for (const k of keys) {
    await r.get('users', k);
    if ((await r.get('users', k)).cache !== 'hit') throw new Error(`not cached: ${k.userId}`);
  }
}
/** ms from `from` until a reader made now (a container that never saw a fault) reads 'new'. */
async function lagOf(k: { userId: string }, from: number, reader: any): Promise<number> {
  while ((await reader.get('users', k)).item?.v !== 'new') {
    if (Date.now() - from > 900_000) return Infinity;
    await sleep(20);
  }
  return Date.now() - from;
}
const parkedCount = async () =>
  ((await stack.dynamo.send(new ScanCommand({ TableName: stack.parkingTable, ConsistentRead: true }))).Items ?? []).length;

// (a) node reachable
{
  const keys = usersOn(B, 'a', 20);
  await cacheOld(keys);
  const reader = cacheOf();
  const lags: number[] = [];
  for (const k of keys) {
    await writeAround(k.userId, 'new');
    lags.push(await lagOf(k, Date.now(), reader));
  }
  log(`(a) node reachable: ${summary(lags)}`);
}
// (b) node away for the consumer only (its connection to B blackholed), B answering everyone else
{
  const keys = usersOn(B, 'b', 20);
  await cacheOld(keys);
  proxies[1].cut();
  const reader = cacheOf();
  const lags: number[] = [];
  for (const k of keys) {
    await writeAround(k.userId, 'new');
    lags.push(await lagOf(k, Date.now(), reader));
  }
  proxies[1].heal();
  log(`(b) away for the consumer only: ${summary(lags)}; parked now ${await parkedCount()}`);
}
// (c) A away for everyone (a cut) 200 s, with 150 of A's items written around meanwhile; B blips
//     for the consumer only (0.5 s cuts) with writes on B during A's outage.
{
  const aKeys = usersOn(A, 'c', 150);
  const bKeys = usersOn(B, 'cb', 10);
  await cacheOld([...aKeys, ...bKeys]);
  proxies[0].cut();
  others[0].cut();
  const pausedAt = Date.now();
  log('(c) A cut off from everyone');
  for (const k of aKeys) await writeAround(k.userId, 'new');
  const bLags: number[] = [];
  for (const k of bKeys) {
    proxies[1].cut();
    const w = Date.now();
    await writeAround(k.userId, 'new');
    await sleep(500);
    proxies[1].heal();
    bLags.push(await lagOf(k, w, cacheOf()));
  }
  log(`(c) B's items, consumer-only blips during A's outage: ${summary(bLags)}; parked ${await parkedCount()}`);
  await sleep(Math.max(0, 200_000 - (Date.now() - pausedAt)));
  proxies[0].heal();
  others[0].heal();
  const back = Date.now();
  log('(c) A reachable again');
  const reader = cacheOf(); // a cold container: trusts A at once
  const first = await reader.get('users', aKeys[0]);
  log(`(c) first read of an A item after its return: ${first.cache} ${first.item?.v}`);
  const lags = await Promise.all(aKeys.slice(0, 20).map((k) => lagOf(k, back, reader)));
  log(
    `(c) A's items after A is back (from its return): ${summary(lags)}; parked ${await parkedCount()}; consumer dirty on A: ${JSON.stringify(consumer.health().map((h: any) => h.dirtyKeys))}`,
  );
}
clearInterval(sweeper);
log(`feed stats ${JSON.stringify(feed.stats)}, sweeps ${sweeps}`);
await feed.stop();
for (const p of [...proxies, ...others]) await p.stop();
await stack.stop();

// (d) away for everyone longer than the retry window: a stack whose entries live 20 s (window:
//     TTL + lease and fence = 23 s with the settings below), A cut off for 90 s.
{
  const small = {
    CACHE_TTL_SECONDS: '20',
    CACHE_LEASE_MS: '10',
    DYNAMODB_TIMEOUT_MS: '100',
    DYNAMODB_MAX_ATTEMPTS: '1',
    STREAM_RETRY_WINDOW_SECONDS: '60',
  };
  const st = await startStack({ shards: 2, parking: true });
  const px = await Promise.all(st.servers.map((s: any) => TcpProxy.start(s.port)));
  const c = (o: Record<string, string> = {}) => st.cache({ ...small, CACHE_NODES: px.map((p: any) => p.url).join(','), ...o });
  const w = c();
  const f = new StreamFeed({
    client: localDynamoClientConfig(ddb.endpoint),
    tables: st.tables.map((t: any) => st.prefix + t.name),
    handler: createStreamHandler(c()),
    subscriptions: [{ table: st.parkingTable, handler: createReplayHandler(c()) }],
    largestTtlSeconds: 20,
    mapping: { maximumRecordAgeInSeconds: 60 },
  });
  await f.start();
  const sw = createSweepHandler(c());
  const keys: { userId: string }[] = [];
  for (let i = 0; keys.length < 20; i++) {
    const k = { userId: `d-${i}` };
    if (w.nodeFor(w.resolve('users', k))?.address.endsWith(`:${px[0].port}`)) keys.push(k);
  }
  for (const k of keys) await w.put('users', { ...k, v: 'old' });
  await sleep(1500);
  for (const k of keys) await w.get('users', k);
  px[0].cut();
  const cutAt = Date.now();
  log('(d) A cut off from everyone for 90 s (TTL 20 s)');
  for (const k of keys)
    await st.dynamo.send(
      new PutItemCommand({
        TableName: `${st.prefix}users`,
        Item: { userId: { S: k.userId }, v: { S: 'new' }, _version: { N: String(Date.now()) } },
      }),
    );
  await sleep(90_000 - (Date.now() - cutAt));
  px[0].heal();
  const back = Date.now();
  const r = c();
  const reads = await Promise.all(keys.map((k) => r.get('users', k)));
  log(
    `(d) after A is back: ${reads.filter((x: any) => x.item?.v === 'new').length}/20 new at the first read (${reads.map((x: any) => x.cache).join(',')}) ${Date.now() - back} ms after its return`,
  );
  log(`(d) sweep: ${JSON.stringify(await sw())}; feed ${JSON.stringify(f.stats)}`);
  await f.stop();
  for (const p of px) await p.stop();
  await st.stop();
}
await ddb.stop();
process.exit(0);
