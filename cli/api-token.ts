// The token that guards a process's status and query API (/v1/…; /metrics and the probes stay
// open): from a file (a mounted Kubernetes Secret) or the environment. Declared once here and
// spread into the settings of each process that serves HTTP.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../protocol/index.js';

export const apiTokenSettings = {
  apiTokenFile: {
    flag: '--api-token-file <file>',
    env: 'KAPPA_API_TOKEN_FILE',
    schema: z.string().optional(),
    help: "file holding the token the HTTP API (all but /metrics, /healthz, /readyz) wants as 'Authorization: Bearer'",
  },
  apiToken: {
    flag: '--api-token <token>',
    env: 'KAPPA_API_TOKEN',
    schema: z.string().optional(),
    secret: { instead: '--api-token-file or KAPPA_API_TOKEN_FILE' },
    help: 'the HTTP API token itself (prefer --api-token-file: a flag shows in ps)',
  },
} as const;

/** The API token the settings give, read from its file when named; undefined leaves the API open. */
export function apiTokenOf(settings: { apiToken?: string; apiTokenFile?: string }): string | undefined {
  if (settings.apiToken !== undefined && settings.apiTokenFile !== undefined)
    throw new ConfigError('give the API token or the API token file, not both');
  let token = settings.apiToken;
  if (settings.apiTokenFile !== undefined) {
    try {
      token = readFileSync(settings.apiTokenFile, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read the API token file ${settings.apiTokenFile}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  if (token === undefined) return undefined;
  token = token.trim();
  // An empty token would let anyone in who sends 'Bearer' with nothing after it: refuse it.
  if (!/^\S{16,}$/.test(token))
    throw new ConfigError(
      `the API token${settings.apiTokenFile ? ` in ${settings.apiTokenFile}` : ''} must be at least 16 characters with no spaces`,
    );
  return token;
}
