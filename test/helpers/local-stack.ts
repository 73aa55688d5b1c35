/** `npm start` (infra/local/start.ts) as a child process, and HTTP requests to it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { freePort } from './ports.ts';

export interface Stack {
  base: string;
  stage: string;
  redisPorts: number[];
  process: ChildProcess;
  output: () => string;
}

/** Starts the local stack of the checkout at `cwd` (default: this one) under a stage of its own. */
export async function startLocalStack(extraEnv: Record<string, string> = {}, cwd?: string): Promise<Stack> {
  const [http, lambda, r1, r2, r3] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const redisPorts = [r1, r2, r3] as number[];
  const stage = `e2e${randomBytes(3).toString('hex')}`;
  let out = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'infra/local/start.ts'], {
    env: {
      ...process.env,
      PORT: String(http),
      LAMBDA_PORT: String(lambda),
      REDIS_PORTS: redisPorts.join(','),
      STAGE: stage,
      CACHE_CHECK_INTERVAL_SECONDS: '1',
      CACHE_START_CYCLES: '1',
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd,
  });
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (out.includes('ready —')) {
        clearInterval(timer);
        resolve();
      }
    }, 100);
    child.once('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`the local stack exited (${code}):\n${out.slice(-3000)}`));
    });
  });
  return { base: `http://127.0.0.1:${http}`, stage, redisPorts, process: child, output: () => out };
}

export async function stopLocalStack(s: Stack): Promise<void> {
  if (s.process.exitCode !== null) return;
  const exited = new Promise((r) => s.process.once('exit', r));
  s.process.kill('SIGTERM');
  await exited;
}

export async function req(s: Stack, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(s.base + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: text ? (JSON.parse(text) as any) : undefined };
}
