import { resolveSecretVariables, sharedItemCache, type ItemCache } from '../lib/index.ts';

let secrets: Promise<void> | undefined;

/**
 * The container's cache, once its secrets are resolved (lib/secrets.ts): the AUTH token and the
 * logs' key come from Secrets Manager at cold start, never from the function's configuration.
 */
export async function functionCache(): Promise<ItemCache> {
  await (secrets ??= resolveSecretVariables());
  return sharedItemCache();
}
