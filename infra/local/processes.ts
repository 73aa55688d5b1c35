import type { ChildProcess } from 'node:child_process';

/** The local services' child processes (DynamoDB Local, redis-server): exit checks and shutdown. */

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

export function waitForExit(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  // Children are unref'd after spawn (a forgotten one must not keep the process alive); keep the
  // event loop alive while we wait for this one.
  child.ref();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** SIGTERM, then SIGKILL if the process is still there after `graceMs`; resolves once it exited. */
export async function terminate(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (hasExited(child)) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!hasExited(child)) child.kill('SIGKILL');
  }, graceMs);
  await waitForExit(child);
  clearTimeout(timer);
}
