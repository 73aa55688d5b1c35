/**
 * npm run consistency -- --seconds N [--faults LIST] [--seed S] [--policy strict|available]
 *                        [--workers N] [--concurrency N] [--command-timeout MS] [--stream-poll MS] [--out FILE]
 *                        [--history FILE]
 *
 * Starts DynamoDB Local (unless DYNAMODB_ENDPOINT is set) and redis-server shards, runs client
 * containers, an out-of-band writer, the Streams consumer and the fault schedule, checks the history,
 * prints a table, writes consistency/results/latest.json, and exits non-zero on any stale or phantom
 * read or failed request (for the policy's claims).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultRunOptions, runConsistency, type RunOptions } from './harness.ts';
import { ALL_FAULTS, type FaultKind } from './history.ts';
import { formatReport } from './report.ts';

function usage(message?: string): never {
  if (message) console.error(`consistency: ${message}`);
  console.error(
    'usage: npm run consistency -- --seconds N [--faults ' + ALL_FAULTS.join(',') + '|all|none] [--seed S] [--policy strict|available]\n' +
      '       [--workers N] [--concurrency N] [--command-timeout MS] [--stream-poll MS] [--out FILE] [--history FILE]',
  );
  process.exit(2);
}

function parse(argv: string[]): { options: Partial<RunOptions>; out: string } {
  const options: Partial<RunOptions> = {};
  let out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'latest.json');
  const int = (name: string, raw: string | undefined, min: number): number => {
    if (raw === undefined || !/^\d+$/.test(raw) || Number(raw) < min) usage(`${name} needs a whole number ≥ ${min}`);
    return Number(raw);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const [flag, inline] = arg.includes('=') ? (arg.split(/=(.*)/s, 2) as [string, string]) : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--seconds':
        options.seconds = int('--seconds', value(), 5);
        break;
      case '--seed':
        options.seed = int('--seed', value(), 0);
        break;
      case '--workers':
        options.workers = int('--workers', value(), 1);
        break;
      case '--concurrency':
        options.concurrency = int('--concurrency', value(), 1);
        break;
      case '--command-timeout':
        options.commandTimeoutMs = int('--command-timeout', value(), 10);
        break;
      case '--stream-poll':
        options.streamPollMs = int('--stream-poll', value(), 10);
        break;
      case '--policy': {
        const p = value();
        if (p !== 'strict' && p !== 'available') usage('--policy is strict or available');
        options.policy = p;
        break;
      }
      case '--faults': {
        const list = (value() ?? '').trim();
        if (list === 'all' || list === '') options.faults = [...ALL_FAULTS];
        else if (list === 'none') options.faults = [];
        else {
          const kinds = list.split(',').map((s) => s.trim());
          const bad = kinds.filter((k) => !ALL_FAULTS.includes(k as FaultKind));
          if (bad.length) usage(`unknown fault(s) ${bad.join(', ')}; known: ${ALL_FAULTS.join(', ')}`);
          options.faults = kinds as FaultKind[];
        }
        break;
      }
      case '--history':
        options.historyFile = value() ?? usage('--history needs a file');
        break;
      case '--out':
        out = value() ?? usage('--out needs a file');
        break;
      case '--help':
      case '-h':
        usage();
      default:
        usage(`unknown argument ${arg}`);
    }
  }
  return { options, out };
}

const { options, out } = parse(process.argv.slice(2));
const seconds = options.seconds ?? defaultRunOptions.seconds;
const started = Date.now();
try {
  const result = await runConsistency({ ...options, seconds });
  const command = ['npm run consistency --', ...process.argv.slice(2)].join(' ');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ command, ...result }, null, 2)}\n`);
  console.log(formatReport(result));
  console.log(`\n${out} written (${Math.round((Date.now() - started) / 1000)} s in all)`);
  process.exit(result.verdict.ok ? 0 : 1);
} catch (err) {
  console.error(err);
  process.exit(3);
}
