/**
 * One worst body of bench/hostile.ts, for profiling the handler on it:
 *
 *   node --cpu-prof --cpu-prof-dir /tmp/prof --import tsx bench/profile-hostile.ts --kind longestNumbers [--n 20]
 *
 * Starts the bench's stack (bench/setup.ts), calls the HTTP handler (all routes) `n` times with the
 * body at HTTP_MAX_BODY_BYTES, and prints each call's wall and CPU time beside JSON.parse of it.
 */
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { kind: { type: 'string', default: 'longestNumbers' }, n: { type: 'string', default: '20' } },
});
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
// As the bench (bench/run.ts): no EMF document printed per request.
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { startStack, ready } = await import('./setup.ts');
const { worstBodies, hostileEvent } = await import('./hostile.ts');
const { createHttpApp } = await import('../functions/http/app.ts');
const { allRoutes } = await import('../functions/http/routes.ts');

const stack = await startStack((m) => console.error(m));
try {
  const cache = stack.cache();
  await ready(cache);
  const app = createHttpApp(cache, allRoutes);
  const request = worstBodies(cache.config.http.maxBodyBytes)[values.kind];
  if (request === undefined) throw new Error(`--kind: one of ${Object.keys(worstBodies(1000)).join(', ')}`);
  for (let i = 0; i < Number(values.n); i++) {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const res = await app(hostileEvent(request.method, request.path, request.body, i));
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const t1 = performance.now();
    JSON.parse(request.body);
    const parse = performance.now() - t1;
    console.log(
      `${values.kind} → ${res.statusCode}: ${wall.toFixed(1)} ms (CPU ${((cpu.user + cpu.system) / 1000).toFixed(1)} ms), JSON.parse ${parse.toFixed(2)} ms`,
    );
  }
} finally {
  await stack.stop();
}
