/** The library's log lines (Powertools writes JSON lines, errors to stderr), captured while a test runs. */
export interface CapturedLogs {
  /** Every JSON line written so far, parsed. */
  entries(): Record<string, unknown>[];
  /** The raw text written so far (to check that something never appears). */
  text(): string;
  /** Puts stdout and stderr back. */
  stop(): void;
}

export function captureLogs(): CapturedLogs {
  const chunks: string[] = [];
  const streams = [process.stdout, process.stderr];
  const writes = streams.map((s) => s.write);
  for (const s of streams) {
    const write = s.write.bind(s);
    s.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof s.write;
  }
  const text = (): string => chunks.join('');
  return {
    text,
    // Per write: the test runner's own frames (no newline) can sit between two log lines.
    entries: () =>
      chunks
        .flatMap((c) => c.split('\n'))
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    stop: () => streams.forEach((s, i) => (s.write = writes[i] as typeof s.write)),
  };
}

/** The JSON lines the library logged while `fn` ran (parsed, and as written), with its result. */
export async function logsDuring<T>(fn: () => Promise<T>): Promise<{ result: T; logs: Record<string, unknown>[]; lines: string[] }> {
  const capture = captureLogs();
  try {
    const result = await fn();
    const lines = capture
      .text()
      .split('\n')
      .filter((l) => l.startsWith('{'));
    return { result, logs: capture.entries(), lines };
  } finally {
    capture.stop();
  }
}
