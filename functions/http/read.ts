import { sharedItemCache } from '../../lib/index.ts';
import { createHttpApp } from './app.ts';
import { readRoutes } from './routes.ts';

/** GET item / partition, POST batch-get. Built at module scope: clients and node health outlive an invocation. */
export const handler = createHttpApp(sharedItemCache(), readRoutes);
