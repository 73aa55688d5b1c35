import { functionCache } from '../shared-cache.ts';
import { createHttpApp } from './app.ts';
import { readRoutes } from './routes.ts';

/** GET item / partition, POST batch-get. Built at module scope: clients and node health outlive an invocation. */
export const handler = createHttpApp(await functionCache(), readRoutes);
