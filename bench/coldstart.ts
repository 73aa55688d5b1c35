/**
 * Cold start: the size of each function's bundle as `npm run package` leaves it in
 * `.serverless/*.zip`, and each bundle's module initialisation in a fresh Node process.
 *
 * Method: each zip is unpacked into a temp dir; a new `node -e` process (no tsx, no NODE_OPTIONS,
 * the environment a Lambda container of the stack would have) takes performance.now(), imports the
 * handler module (which builds its ItemCache, hence its Redis and DynamoDB clients, at module
 * scope; the stream consumer builds it on its first event, so it is also given an empty batch),
 * takes performance.now() again and prints the difference. One unmeasured process per bundle first
 * (page cache), then `runs` rounds over all bundles in turn; the figure per bundle is the median.
 * `sinceStartMs` (the same end point, from the process's own time origin) adds Node's start-up.
 *
 * As a yardstick measured the same way in the same run, the bench also builds the "bare" bundle the
 * issue names (the DynamoDB clients, ioredis, crc-32 and the Powertools logger, minified, each
 * client constructed) and zips it at deflate level 9.
 *
 * When there are no zips yet, the same is done with a stand-in for each function (esbuild with the
 * options of serverless.yml's custom.esbuild, zipped here); the result says so (`source: esbuild-proxy`).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative, sep } from 'node:path';
import { extractZip, joinEntryPath, readZip, writeZip, type ZipEntry } from './zip.ts';
import { median } from './stats.ts';

export interface BundleFigure {
  /** Function name (serverless) or the bundle's name. */
  name: string;
  zip: string;
  bytes: number;
  kib: number;
  /** The handler module inside the zip, and its export. */
  module: string;
  initMs: number[];
  initMedianMs: number;
  sinceStartMedianMs: number;
}

export interface ColdResult {
  source: 'serverless' | 'esbuild-proxy';
  note: string | undefined;
  bundles: BundleFigure[];
  largestBundleKiB: number;
  largestBundle: string;
  /** The largest median init over the bundles. */
  initMs: number;
  slowestBundle: string;
  bare: BundleFigure | undefined;
}

interface Candidate {
  name: string;
  zipPath: string;
  zipBytes: Buffer;
  module: string;
  exportName: string;
  stream: boolean;
}

export async function runColdStart(
  repoRoot: string,
  serverlessDir: string,
  env: Record<string, string>,
  runs: number,
  log: (m: string) => void,
): Promise<ColdResult> {
  const work = mkdtempSync(join(tmpdir(), 'bench-cold-'));
  try {
    let source: ColdResult['source'] = 'serverless';
    let note: string | undefined;
    let candidates = serverlessCandidates(serverlessDir);
    if (candidates.length === 0) {
      source = 'esbuild-proxy';
      note = `no zips in ${relative(repoRoot, serverlessDir) || serverlessDir} (run \`npm run package\` first): sizes and init times are of esbuild stand-ins built by the bench`;
      log(`cold start: ${note}`);
      candidates = await proxyCandidates(repoRoot, work);
    }
    const bareCandidate = await bareBundle(repoRoot, work);

    // Unpack each zip once.
    const unpacked = new Map<string, string>();
    const all = [...candidates, bareCandidate];
    for (const c of all) {
      if (unpacked.has(c.zipPath)) continue;
      const dir = join(work, `unzipped-${unpacked.size}`);
      extractZip(c.zipBytes, dir);
      unpacked.set(c.zipPath, dir);
    }
    const times = new Map<Candidate, { init: number[]; since: number[] }>(all.map((c) => [c, { init: [], since: [] }]));
    const once = (c: Candidate) => {
      const root = unpacked.get(c.zipPath) as string;
      return initOnce(root, joinEntryPath(root, c.module), c.exportName, c.stream, env);
    };
    for (const c of all) await once(c); // page cache, unmeasured
    for (let r = 0; r < runs; r++) {
      for (const c of all) {
        const t = await once(c);
        const entry = times.get(c) as { init: number[]; since: number[] };
        entry.init.push(t.initMs);
        entry.since.push(t.sinceStartMs);
      }
    }
    const figure = (c: Candidate): BundleFigure => {
      const t = times.get(c) as { init: number[]; since: number[] };
      return {
        name: c.name,
        zip: c.zipPath,
        bytes: c.zipBytes.length,
        kib: c.zipBytes.length / 1024,
        module: `${c.module}#${c.exportName}`,
        initMs: t.init,
        initMedianMs: median(t.init),
        sinceStartMedianMs: median(t.since),
      };
    };
    const bundles = candidates.map(figure);
    const largest = bundles.reduce((a, b) => (b.kib > a.kib ? b : a));
    const slowest = bundles.reduce((a, b) => (b.initMedianMs > a.initMedianMs ? b : a));
    for (const b of [...bundles, figure(bareCandidate)]) {
      log(
        `cold start: ${b.name}: ${b.kib.toFixed(1)} KiB, init median ${b.initMedianMs.toFixed(1)} ms (${b.sinceStartMedianMs.toFixed(1)} ms since process start)`,
      );
    }
    return {
      source,
      note,
      bundles,
      largestBundleKiB: largest.kib,
      largestBundle: largest.name,
      initMs: slowest.initMedianMs,
      slowestBundle: slowest.name,
      bare: figure(bareCandidate),
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const HANDLER_MODULE_EXTENSIONS = ['.js', '.mjs', '.cjs'];

/** The functions in `.serverless/`: from serverless-state.json when it is there, else every zip's JS entry points. */
function serverlessCandidates(dir: string): Candidate[] {
  if (!existsSync(dir)) return [];
  const zips = readdirSync(dir)
    .filter((f) => f.endsWith('.zip'))
    .map((f) => join(dir, f));
  if (zips.length === 0) return [];
  const out: Candidate[] = [];
  const statePath = join(dir, 'serverless-state.json');
  const entriesOf = new Map<string, string[]>();
  const entries = (zip: string): string[] => {
    let e = entriesOf.get(zip);
    if (!e) entriesOf.set(zip, (e = readZip(readFileSync(zip)).map((x) => x.name)));
    return e;
  };
  if (existsSync(statePath)) {
    const state = JSON.parse(readFileSync(statePath, 'utf8')) as {
      service?: { functions?: Record<string, { handler?: string; package?: { artifact?: string } }> };
      package?: { artifact?: string };
    };
    const serviceZip = state.package?.artifact ? join(dir, basename(state.package.artifact)) : zips.length === 1 ? zips[0] : undefined;
    for (const [name, fn] of Object.entries(state.service?.functions ?? {})) {
      if (!fn.handler) continue;
      const artifact = fn.package?.artifact
        ? join(dir, basename(fn.package.artifact))
        : (zips.find((z) => basename(z, '.zip') === name) ?? serviceZip);
      if (!artifact || !existsSync(artifact)) continue;
      const dot = fn.handler.lastIndexOf('.');
      const base = fn.handler.slice(0, dot);
      const module = HANDLER_MODULE_EXTENSIONS.map((ext) => base + ext).find((m) => entries(artifact).includes(m));
      if (!module) continue;
      out.push({
        name,
        zipPath: artifact,
        zipBytes: readFileSync(artifact),
        module,
        exportName: fn.handler.slice(dot + 1),
        stream: /stream/i.test(name + fn.handler),
      });
    }
    if (out.length > 0) return out;
  }
  // No usable state: every JS module outside node_modules is taken for a handler module.
  for (const zip of zips) {
    for (const module of entries(zip).filter((e) => /\.(m|c)?js$/.test(e) && !e.split('/').includes('node_modules'))) {
      out.push({
        name: `${basename(zip, '.zip')}:${module}`,
        zipPath: zip,
        zipBytes: readFileSync(zip),
        module,
        exportName: 'handler',
        stream: /stream/i.test(module + zip),
      });
    }
  }
  return out;
}

/** Every `functions/**.ts` that exports a handler, bundled and zipped as serverless-esbuild would (minified). */
async function proxyCandidates(repoRoot: string, work: string): Promise<Candidate[]> {
  const functionsDir = join(repoRoot, 'functions');
  if (!existsSync(functionsDir)) throw new Error('no functions/ to bundle');
  const files = (readdirSync(functionsDir, { recursive: true, encoding: 'utf8' }) as string[])
    .map((f) => join(functionsDir, f))
    .filter(
      (f) =>
        f.endsWith('.ts') && statSync(f).isFile() && /export\s+(const|async function|function)\s+handler\b/.test(readFileSync(f, 'utf8')),
    );
  const out: Candidate[] = [];
  for (const file of files.sort()) {
    const rel = relative(repoRoot, file).split(sep).join('/');
    const module = rel.replace(/\.ts$/, '.mjs');
    const code = await esbuildBundle({ entryPoints: [file] }, repoRoot);
    const zipPath = join(work, `${rel.replace(/\//g, '-').replace(/\.ts$/, '')}.zip`);
    out.push({
      name: rel.replace(/^functions\//, '').replace(/\.ts$/, ''),
      zipPath,
      zipBytes: writeZip([{ name: module, data: code }]),
      module,
      exportName: 'handler',
      stream: /stream/i.test(rel),
    });
  }
  return out;
}

const BARE_SOURCE = `
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Redis } from 'ioredis';
import CRC32 from 'crc-32';
import { Logger } from '@aws-lambda-powertools/logger';
const logger = new Logger({ serviceName: 'bare' });
const dynamo = DynamoDBDocumentClient.from(new DynamoDBClient({ region: process.env.AWS_REGION, endpoint: process.env.DYNAMODB_ENDPOINT }));
const redis = new Redis((process.env.CACHE_NODES ?? '').split(',')[0], { enableOfflineQueue: false, enableAutoPipelining: true });
redis.on('error', () => {});
export const handler = async () => ({ statusCode: 200, body: String(CRC32.str('x')) + typeof dynamo + typeof logger });
`;

/** The issue's yardstick: just the clients the library needs, minified, each constructed at module scope. */
async function bareBundle(repoRoot: string, work: string): Promise<Candidate> {
  const code = await esbuildBundle(
    { stdin: { contents: BARE_SOURCE, resolveDir: repoRoot, sourcefile: 'bare.ts', loader: 'ts' } },
    repoRoot,
  );
  const entries: ZipEntry[] = [{ name: 'bare.mjs', data: code }];
  return {
    name: 'bare (clients only)',
    zipPath: join(work, 'bare.zip'),
    zipBytes: writeZip(entries),
    module: 'bare.mjs',
    exportName: 'handler',
    stream: false,
  };
}

async function esbuildBundle(
  input: { entryPoints: string[] } | { stdin: { contents: string; resolveDir: string; sourcefile: string; loader: 'ts' } },
  repoRoot: string,
): Promise<Buffer> {
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    ...input,
    absWorkingDir: repoRoot,
    bundle: true,
    minify: true,
    platform: 'node',
    target: 'node20',
    // As serverless.yml's custom.esbuild: an ES module, ESM entry points of dependencies preferred,
    // a require() for the CommonJS ones (ioredis), names kept.
    format: 'esm',
    mainFields: ['module', 'main'],
    keepNames: true,
    treeShaking: true,
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    legalComments: 'none',
    write: false,
    outfile: 'out.mjs',
    logLevel: 'silent',
  });
  const file = result.outputFiles[0];
  if (!file) throw new Error('esbuild produced nothing');
  return Buffer.from(file.contents);
}

const INIT_SCRIPT = `
const { performance } = require('node:perf_hooks');
const { pathToFileURL } = require('node:url');
const [file, exportName, stream] = process.argv.slice(1);
const t0 = performance.now();
import(pathToFileURL(file).href).then(async (m) => {
  const h = m[exportName] ?? (m.default && m.default[exportName]);
  if (typeof h !== 'function') throw new Error('no ' + exportName + ' export in ' + file);
  if (stream === '1') await h({ Records: [] });
  const t1 = performance.now();
  process.stdout.write(JSON.stringify({ initMs: t1 - t0, sinceStartMs: t1 }));
  process.exit(0);
}).catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
`;

function initOnce(
  root: string,
  file: string,
  exportName: string,
  stream: boolean,
  env: Record<string, string>,
): Promise<{ initMs: number; sinceStartMs: number }> {
  const childEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    POWERTOOLS_LOG_LEVEL: 'ERROR',
    ...env,
  };
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['-e', INIT_SCRIPT, file, exportName, stream ? '1' : '0'],
      { env: childEnv, cwd: root, timeout: 60_000, maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`init of ${file} failed: ${err.message}\n${stderr}`));
          return;
        }
        try {
          // The last line: a stream bundle's invocation prints its metrics (EMF) before it.
          resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '') as { initMs: number; sinceStartMs: number });
        } catch {
          reject(new Error(`init of ${file} printed no timing: ${stdout}\n${stderr}`));
        }
      },
    );
  });
}
