/**
 * `osls package`, shared by the tests that check what it writes (package.test.ts: the zips and the
 * template; template-spec.test.ts: the templates of each stage and cache deployment): each package is
 * made once per set of inputs, into `.tmp-package-cache/<key>/`, and reused by every test file of the
 * run (each file is a process of its own, so the cache is on disk). The key is a hash of the stage, the
 * params, and every file the package is made from, so a changed source is packaged anew.
 *
 * Only `npm run package`'s own package (stage dev, its params) is bundled by esbuild: the bundles do
 * not depend on the stage or the params (serverless.yml's esbuild options name neither, checked
 * below), so every other package takes its zips and is made with serverless-esbuild's `skipBuild`,
 * which makes the same template (same resources, same code references) in a fraction of the time.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import yaml from 'js-yaml';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CACHE = join(ROOT, '.tmp-package-cache');
const TEMPLATE = 'cloudformation-template-update-stack.json';

/** What a package is made from: the service's config, its sources and its dependencies' lock. */
const INPUT_FILES = ['serverless.yml', 'package.json', 'package-lock.json', 'tables.json', 'tsconfig.json'];
const INPUT_DIRS = ['infra', 'functions', 'lib'];

/** The `--param=` arguments of `npm run package` (placeholder VPC ids: the package is for checking). */
export function packageParams(): string[] {
  const script = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.package as string;
  return script.split(' ').filter((a) => a.startsWith('--param='));
}

function inputsHash(args: string[]): string {
  const hash = createHash('sha256').update(JSON.stringify(args));
  const files = [...INPUT_FILES];
  for (const dir of INPUT_DIRS) {
    for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })) {
      if (statSync(join(ROOT, dir, f)).isFile()) files.push(join(dir, f));
    }
  }
  for (const f of files.sort()) hash.update(`\0${f}\0`).update(readFileSync(join(ROOT, f)));
  return hash.digest('hex').slice(0, 24);
}

/** Packages being made by this process, by directory: callers of the same package share one. */
const making = new Map<string, Promise<string>>();
let configs = 0;

/**
 * The directory `osls package --stage <stage>` wrote, with the params of `npm run package` and
 * `extra` after them (a later `--param=` of the same name wins). Made on first call for these inputs.
 * Not two at once: osls runs in one service folder share serverless-esbuild's work folder.
 */
export function packaged(stage = 'dev', extra: string[] = []): Promise<string> {
  const args = ['package', '--stage', stage, ...packageParams(), ...extra];
  const dir = join(CACHE, inputsHash(args));
  if (existsSync(join(dir, TEMPLATE))) return Promise.resolve(dir);
  let made = making.get(dir);
  if (made === undefined) {
    made = make(dir, args, stage === 'dev' && extra.length === 0);
    making.set(dir, made);
  }
  return made;
}

async function make(dir: string, args: string[], bundle: boolean): Promise<string> {
  mkdirSync(CACHE, { recursive: true });
  // Packages of inputs that have since changed: none is used again after its run (an hour is ample).
  for (const entry of readdirSync(CACHE)) {
    const at = join(CACHE, entry);
    if (Date.now() - statSync(at).mtimeMs > 3_600_000) rmSync(at, { recursive: true, force: true });
  }
  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  const config = bundle ? undefined : await prebuiltConfig(partial);
  let run: { status: number | null; signal: string | null; output: string };
  try {
    // osls itself, not through npx: one process less per package.
    const cli = [join(ROOT, 'node_modules', 'osls', 'bin', 'serverless.js'), ...args, '--package', relative(ROOT, partial)];
    run = await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...cli, ...(config ? ['--config', config] : [])], { cwd: ROOT, timeout: 300_000 });
      let output = '';
      child.stdout.on('data', (b: Buffer) => void (output += b.toString()));
      child.stderr.on('data', (b: Buffer) => void (output += b.toString()));
      child.once('error', reject);
      child.once('close', (status, signal) => resolve({ status, signal, output }));
    });
  } finally {
    if (config) unlinkSync(join(ROOT, config));
  }
  assert.equal(run.status, 0, `osls ${args.join(' ')} failed (${run.status ?? run.signal}):\n${run.output}`);
  assert.ok(existsSync(join(partial, TEMPLATE)), `osls package wrote no ${TEMPLATE}`);
  // Whole or not at all: a run stopped halfway leaves a .partial, never a package that looks made.
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  return dir;
}

/**
 * Puts the zips of `npm run package`'s package into `into` and writes serverless.yml, with
 * serverless-esbuild told to take them as built (`skipBuild`), beside it (osls takes a config in the
 * service's folder only); returns its name there, for `--config`.
 */
async function prebuiltConfig(into: string): Promise<string> {
  const base = await packaged('dev');
  mkdirSync(into, { recursive: true });
  for (const f of readdirSync(base)) if (f.endsWith('.zip')) copyFileSync(join(base, f), join(into, f));
  // biome-ignore lint/suspicious/noExplicitAny: serverless.yml is untyped
  const config = yaml.load(readFileSync(join(ROOT, 'serverless.yml'), 'utf8')) as any;
  assert.ok(!JSON.stringify(config.custom.esbuild).includes('${'), 'the esbuild options depend on a variable: bundle each package');
  config.custom.esbuild.skipBuild = true;
  const name = `.tmp-package-config-${process.pid}-${++configs}.json`;
  writeFileSync(join(ROOT, name), JSON.stringify(config));
  return name;
}

/** The CloudFormation template of `packaged(stage, extra)`. */
// biome-ignore lint/suspicious/noExplicitAny: a template is untyped JSON
export async function packagedTemplate(stage = 'dev', extra: string[] = []): Promise<Record<string, any>> {
  return JSON.parse(readFileSync(join(await packaged(stage, extra), TEMPLATE), 'utf8'));
}
