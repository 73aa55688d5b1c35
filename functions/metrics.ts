import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { logger, type ItemCache } from '../lib/index.ts';

/** The `service` dimension of every metric (the logger's service name, lib/log.ts). */
export const METRICS_SERVICE = 'dynamo-redis-cache';

/** What an invocation adds to the library's counts: an HTTP request's latency and its route. */
export interface RequestTiming {
  /** The route as declared, e.g. `GET /tables/{table}/items/{hash}`: a handful of values, never a key. */
  route: string;
  ms: number;
}

/**
 * The library's counts (lib/metrics.ts) bound to Powertools Metrics: CloudWatch embedded metric
 * format, printed to stdout, which Lambda sends to CloudWatch Logs, where CloudWatch turns it into
 * metrics (no PutMetricData call, no IAM permission, no network on the request's path). Once per
 * invocation every counter goes out in one EMF document under the `service` dimension only; an
 * HTTP request's latency goes out beside it in a document of its own with a `route` dimension (an
 * EMF document gives all its metrics the same dimensions, and a route on every counter would
 * multiply what CloudWatch bills). The cold start is Powertools' own `ColdStart` metric.
 */
export class InvocationMetrics {
  private readonly metrics: Metrics;
  /** The latency's document, built once: Powertools' singleMetric() builds a Metrics (and a Console) per call, about 0.5 ms. */
  private readonly latency: Metrics;

  constructor(private readonly cache: ItemCache) {
    const options = { namespace: cache.config.observe.metricsNamespace, serviceName: METRICS_SERVICE };
    this.metrics = new Metrics(options);
    this.latency = new Metrics(options);
  }

  /** Powertools' ColdStart metric, on the container's first invocation only. */
  coldStart(context?: { functionName?: string }): void {
    this.metrics.captureColdStartMetric(context?.functionName);
  }

  /**
   * The invocation's one flush: the levels seen now (nodes not up, dirty keys), then everything
   * counted. Never throws: metrics must not fail a request (a failure is logged instead).
   */
  publish(timing?: RequestTiming): void {
    try {
      const nodes = this.cache.health();
      this.cache.metrics.level('NodesNotUp', nodes.filter((n) => n.status === 'down' || n.status === 'starting').length);
      this.cache.metrics.level(
        'DirtyKeys',
        nodes.reduce((sum, n) => sum + n.dirtyKeys, 0),
      );
      for (const m of this.cache.metrics.take()) this.metrics.addMetric(m.name, m.unit, m.value);
      this.metrics.publishStoredMetrics();
      if (timing !== undefined) {
        // Its dimension goes with the flush (publishStoredMetrics clears it).
        this.latency.addDimension('route', timing.route);
        this.latency.addMetric('Latency', MetricUnit.Milliseconds, timing.ms);
        this.latency.publishStoredMetrics();
      }
    } catch (err) {
      logger.warn('METRICS_NOT_PUBLISHED', { error: err instanceof Error ? err.message : String(err) });
    }
  }
}

const bound = new WeakMap<ItemCache, InvocationMetrics>();

/** One binding per library instance (a container's), so the cold start is counted once. */
export function invocationMetrics(cache: ItemCache): InvocationMetrics {
  let m = bound.get(cache);
  if (m === undefined) {
    m = new InvocationMetrics(cache);
    bound.set(cache, m);
  }
  return m;
}

/** `handler` with the cold start captured before it and the invocation's metrics flushed after it, whatever it does. */
export function withMetrics<E, R, C extends { functionName?: string } = Pick<Context, 'functionName'>>(
  cache: ItemCache,
  handler: (event: E, context?: C) => Promise<R>,
): (event: E, context?: C) => Promise<R> {
  const metrics = invocationMetrics(cache);
  return async (event, context) => {
    metrics.coldStart(context);
    try {
      return await handler(event, context);
    } finally {
      metrics.publish();
    }
  };
}
