/**
 * `npm run bench [-- --quick | --smoke] [--out FILE] [--only LIST] [--dynamodb-endpoint URL] [--serverless-dir DIR] [--hostile-bytes N]`
 *
 * Starts its own services (DynamoDB Local, three redis-server shards on free ports; the cluster
 * suite a Redis Cluster of three primaries of its own, stopped when it ends), measures the
 * issue's figures in one process run, prints a markdown table on stdout (progress goes to stderr)
 * and writes bench/results/latest.json (or --out).
 *
 *   --quick      fewer operations and repeats (under 3 minutes)
 *   --smoke      tiny counts: only checks that every figure can be produced (the smoke test)
 *   --only LIST  comma-separated subset: hit, handler, dynamo, batch, ops, cluster, storm, zipf, writes,
 *                cold, hostile
 *   --dynamodb-endpoint URL   use a running DynamoDB Local instead of starting one
 *   --serverless-dir DIR      where `npm run package` left the zips (default .serverless)
 *   --hostile-bytes N         size of the hostile suite's worst bodies (default and most: HTTP_MAX_BODY_BYTES)
 *
 * The environment is settled here, before the library is loaded (its logger reads it at import).
 */
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    only: { type: 'string' },
    'dynamodb-endpoint': { type: 'string' },
    'serverless-dir': { type: 'string' },
    'hostile-bytes': { type: 'string' },
  },
  strict: true,
});

process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
// The handler suites would print one EMF document per request (functions/metrics.ts) among the
// bench's own output; Powertools then skips serializing and printing them (README, "Operating it",
// gives what a flush costs).
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { main } = await import('./main.ts');
const mode = values.smoke ? 'smoke' : values.quick ? 'quick' : 'full';
try {
  await main({
    mode,
    out: values.out,
    only: values.only
      ? values.only
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : undefined,
    dynamoEndpoint: values['dynamodb-endpoint'],
    serverlessDir: values['serverless-dir'],
    hostileBytes: values['hostile-bytes'] === undefined ? undefined : Number(values['hostile-bytes']),
    argv: process.argv.slice(2),
  });
  process.exit(0);
} catch (err) {
  console.error(err);
  process.exit(1);
}
