import { sharedItemCache } from '../../lib/index.ts';
import { createHttpApp } from './app.ts';
import { healthRoutes } from './routes.ts';

/** GET /health: the cache nodes' states as this container sees them. */
export const handler = createHttpApp(sharedItemCache(), healthRoutes);
