/**
 * npm run consistency -- --seconds N [--mode shards|cluster] [--faults LIST] [--seed S] [--policy strict|available]
 *                        [--workers N] [--concurrency N] [--command-timeout MS] [--check-interval S]
 *                        [--remap canary|procedure] [--dynamo-timeout MS] [--dynamo-deadline MS] [--stream-poll MS] [--out FILE] [--history FILE]
 *
 * Starts DynamoDB Local (unless DYNAMODB_ENDPOINT is set) and redis-server shards, runs client
 * containers, an out-of-band writer, the Streams consumer and the fault schedule, checks the history,
 * prints a table, writes consistency/results/latest.json, and exits non-zero on any stale or phantom
 * read or failed request (for the policy's claims).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { defaultRunOptions, runConsistency, type RunOptions } from './harness.ts';
import { ALL_FAULTS, CLUSTER_FAULTS, type FaultKind } from './history.ts';
import { readHistory, timelineCharts } from './timeline.ts';
import { formatReport } from './report.ts';

function usage(message?: string): never {
  if (message) console.error(`consistency: ${message}`);
  console.error(
    'usage: npm run consistency -- --seconds N [--mode shards|cluster] [--faults ' +
      ALL_FAULTS.join(',') +
      '|all|none] [--seed S] [--policy strict|available] [--remap canary|procedure]\n' +
      `       (--mode cluster: --faults ${CLUSTER_FAULTS.join(',')}|all|none)\n` +
      '       [--workers N] [--concurrency N] [--command-timeout MS] [--check-interval S (default 60)]\n' +
      '       [--dynamo-timeout MS (default 3000)] [--dynamo-deadline MS (default 6000)] [--stream-poll MS]\n' +
      '       [--out FILE] [--history FILE]',
  );
  process.exit(2);
}

const INT_FLAGS = {
  seconds: { option: 'seconds', min: 5 },
  seed: { option: 'seed', min: 0 },
  workers: { option: 'workers', min: 1 },
  concurrency: { option: 'concurrency', min: 1 },
  'command-timeout': { option: 'commandTimeoutMs', min: 10 },
  'check-interval': { option: 'checkIntervalSeconds', min: 1 },
  'dynamo-timeout': { option: 'dynamoTimeoutMs', min: 10 },
  'dynamo-deadline': { option: 'dynamoDeadlineMs', min: 10 },
  'stream-poll': { option: 'streamPollMs', min: 10 },
} as const satisfies Record<string, { option: keyof RunOptions; min: number }>;

function parse(argv: string[]): { options: Partial<RunOptions>; out: string } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        ...(Object.fromEntries(Object.keys(INT_FLAGS).map((k) => [k, { type: 'string' }])) as Record<
          keyof typeof INT_FLAGS,
          { type: 'string' }
        >),
        policy: { type: 'string' },
        mode: { type: 'string' },
        remap: { type: 'string' },
        faults: { type: 'string' },
        history: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    usage((err as Error).message);
  }
  if (values.help) usage();
  const options: Partial<RunOptions> = {};
  for (const [flag, { option, min }] of Object.entries(INT_FLAGS)) {
    const raw = values[flag as keyof typeof INT_FLAGS];
    if (raw === undefined) continue;
    if (!/^\d+$/.test(raw) || Number(raw) < min) usage(`--${flag} needs a whole number ≥ ${min}`);
    options[option] = Number(raw);
  }
  if (values.policy !== undefined) {
    if (values.policy !== 'strict' && values.policy !== 'available') usage('--policy is strict or available');
    options.policy = values.policy;
  }
  if (values.mode !== undefined) {
    if (values.mode !== 'shards' && values.mode !== 'cluster') usage('--mode is shards or cluster');
    options.mode = values.mode;
  }
  // Each mode has its fault classes (history.ts CLUSTER_FAULTS: no partition, no remap; migrate).
  const known = options.mode === 'cluster' ? CLUSTER_FAULTS : ALL_FAULTS;
  if (options.mode === 'cluster') options.faults = [...CLUSTER_FAULTS];
  if (values.remap !== undefined) {
    if (values.remap !== 'canary' && values.remap !== 'procedure') usage('--remap is canary or procedure');
    options.remapMode = values.remap;
  }
  if (values.faults !== undefined) {
    const list = values.faults.trim();
    if (list === 'all' || list === '') options.faults = [...known];
    else if (list === 'none') options.faults = [];
    else {
      const kinds = list.split(',').map((k) => k.trim());
      const bad = kinds.filter((k) => !known.includes(k as FaultKind));
      if (bad.length) usage(`unknown fault(s) ${bad.join(', ')} in ${options.mode ?? 'shards'} mode; known: ${known.join(', ')}`);
      options.faults = kinds as FaultKind[];
    }
  }
  if (values.history !== undefined) options.historyFile = values.history;
  return { options, out: values.out ?? join(dirname(fileURLToPath(import.meta.url)), 'results', 'latest.json') };
}

const { options, out } = parse(process.argv.slice(2));
// The history is kept beside the results unless asked elsewhere: the charts are drawn from it.
options.historyFile ??= join(dirname(out), 'history.ndjson');
mkdirSync(dirname(options.historyFile), { recursive: true });
const seconds = options.seconds ?? defaultRunOptions.seconds;
const started = Date.now();
try {
  const result = await runConsistency({ ...options, seconds });
  const command = ['npm run consistency --', ...process.argv.slice(2)].join(' ');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ command, ...result }, null, 2)}\n`);
  console.log(formatReport(result));
  const { records, windows } = readHistory(options.historyFile);
  const charts = timelineCharts(records, windows);
  const base = out.replace(/\.json$/, '');
  writeFileSync(`${base}-hit-ratio.svg`, charts.hitRatio);
  writeFileSync(`${base}-latency.svg`, charts.latency);
  console.log(`charts: ${base}-hit-ratio.svg, ${base}-latency.svg`);
  console.log(`\n${out} written (${Math.round((Date.now() - started) / 1000)} s in all)`);
  process.exit(result.verdict.ok ? 0 : 1);
} catch (err) {
  console.error(err);
  process.exit(3);
}
