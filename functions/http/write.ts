import { functionCache } from '../shared-cache.ts';
import { createHttpApp } from './app.ts';
import { writeRoutes } from './routes.ts';

/** PUT, PATCH, DELETE of items. Built at module scope: clients and node health outlive an invocation. */
export const handler = createHttpApp(await functionCache(), writeRoutes);
