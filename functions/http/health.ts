import { functionCache } from '../shared-cache.ts';
import { createHttpApp } from './app.ts';
import { healthRoutes } from './routes.ts';

/** GET /health: the cache nodes' states as this container sees them. */
export const handler = createHttpApp(await functionCache(), healthRoutes);
