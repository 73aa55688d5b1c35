/**
 * Secrets resolved at cold start, not carried in the function's configuration (SECURITY.md,
 * "Secrets"): a variable `<NAME>_SECRET_ARN` names a Secrets Manager secret whose JSON field gives
 * `<NAME>` to this process only. The deploy sets CACHE_AUTH_TOKEN_SECRET_ARN (field `token`) and
 * CACHE_LOG_KEYS_SECRET_SECRET_ARN (field `key`), so `lambda:GetFunctionConfiguration` shows an ARN,
 * never a secret.
 *
 * A secret that cannot be fetched leaves its variable unset and is logged: without the AUTH token
 * every node refuses the connection and requests are served from DynamoDB (G3); the next
 * authentication error fetches again (refreshAuthToken).
 */
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { errorMessage } from './errors.ts';
import { logger } from './log.ts';

/** The variables a secret may set, and the JSON field of the secret that holds each. */
export const SECRET_VARIABLES = {
  CACHE_AUTH_TOKEN: 'token',
  CACHE_LOG_KEYS_SECRET: 'key',
} as const;

export type SecretVariable = keyof typeof SECRET_VARIABLES;

/** How long one fetch may take: a cold start must not wait on a hung endpoint for long. */
const FETCH_TIMEOUT_MS = 2000;

let provider: SecretsProvider | undefined;

function secrets(): SecretsProvider {
  provider ??= new SecretsProvider({
    awsSdkV3Client: new SecretsManagerClient({
      maxAttempts: 2,
      requestHandler: { requestTimeout: FETCH_TIMEOUT_MS, connectionTimeout: FETCH_TIMEOUT_MS, throwOnRequestTimeout: true },
    }),
  });
  return provider;
}

/**
 * The field `field` of the secret `arn` at the version stage `stage`, always fetched: the
 * provider's cache is keyed by the secret's name alone, so a cached value could be another
 * stage's; this runs once per cold start and once per refused token.
 */
async function fetchField(arn: string, field: string, stage: 'AWSCURRENT' | 'AWSPREVIOUS'): Promise<string> {
  const value = await secrets().get(arn, { transform: 'json', forceFetch: true, sdkOptions: { VersionStage: stage } });
  const v = (value as Record<string, unknown> | undefined)?.[field];
  if (typeof v !== 'string' || v === '') throw new Error(`the secret has no string field '${field}'`);
  return v;
}

/**
 * Sets each `<NAME>` whose `<NAME>_SECRET_ARN` is given, in `env` (process.env by default), from
 * its secret; a `<NAME>` set directly beside its ARN is a configuration error. Call it before the
 * first loadConfig (the functions do it at module scope, during init).
 */
export async function resolveSecretVariables(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  await Promise.all(
    (Object.entries(SECRET_VARIABLES) as [SecretVariable, string][]).map(async ([name, field]) => {
      const arn = env[`${name}_SECRET_ARN`]?.trim();
      if (!arn) return;
      if (env[name]) throw new Error(`${name} and ${name}_SECRET_ARN are both set: give the secret one way`);
      try {
        env[name] = await fetchField(arn, field, 'AWSCURRENT');
      } catch (err) {
        logger.error('SECRET_UNAVAILABLE', { variable: name, secret: arn, error: errorMessage(err) });
      }
    }),
  );
}

/**
 * The AUTH tokens to try after a node refused ours: the secret's current value fetched again, then
 * its previous one (during a rotation the nodes may still hold the previous token, or already the
 * new one: README, "Rotating the AUTH token").
 */
export async function refreshAuthToken(arn: string): Promise<string[]> {
  const tokens: string[] = [];
  for (const stage of ['AWSCURRENT', 'AWSPREVIOUS'] as const) {
    try {
      tokens.push(await fetchField(arn, SECRET_VARIABLES.CACHE_AUTH_TOKEN, stage));
    } catch (err) {
      // No previous version is normal before the first rotation.
      if (stage === 'AWSCURRENT')
        logger.error('SECRET_UNAVAILABLE', { variable: 'CACHE_AUTH_TOKEN', secret: arn, error: errorMessage(err) });
    }
  }
  return [...new Set(tokens)];
}
