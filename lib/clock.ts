/**
 * The clock of every deadline the library keeps (Redis commands, a write's commit, DynamoDB calls):
 * milliseconds on a monotonic clock, on the same scale as Date.now() at the process's start. A wall
 * clock stepped back (an NTP correction) between a writer's begin and its commit would push the
 * commit deadline past the writer's fence, which Redis times on its own clock (ARCHITECTURE.md,
 * "How a write travels"). The nodes' state machines (settles, probes, shard-map trust) count elapsed
 * time on it too. Metrics, stream record ages and the sweep's Lambda deadline stay on the wall clock.
 */
export const deadlineClock = (): number => performance.timeOrigin + performance.now();
