// The serving-table settings a process reads from its environment: KAPPA_POSTGRES_URL,
// KAPPA_REDIS_URL, and KAPPA_REPLICAS for the KV tables and the alias registry.
import { internalReplicas } from './replicas.js';

/** The shape of tables/' TableSettings (runtime/ imports only protocol/). */
export function tableSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): {
  postgresUrl?: string;
  redisUrl?: string;
  replicas: number;
} {
  return { postgresUrl: env.KAPPA_POSTGRES_URL, redisUrl: env.KAPPA_REDIS_URL, replicas: internalReplicas(env) };
}
