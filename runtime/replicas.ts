// How many copies JetStream keeps of Kappa's own streams and buckets (cluster state, leader
// lease, checkpoints, serving tables, dead-letter/late/output streams). One on a single server;
// set KAPPA_REPLICAS=3 on a 3-node cluster so losing a node loses nothing. Topics have their own
// replicas, chosen when the topic is created.
import { ConfigError } from '../protocol/index.js';

export function internalReplicas(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.KAPPA_REPLICAS;
  if (text === undefined || text === '') return 1;
  const replicas = Number(text);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new ConfigError(`KAPPA_REPLICAS must be an integer from 1 to 5, found ${JSON.stringify(text)}`);
  }
  return replicas;
}
