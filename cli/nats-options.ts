// The connection flags every command shares; flags win over environment variables.
import type { Command } from 'commander';
import { natsSettingsFromEnv, type NatsSettings } from '../protocol/index.js';

export function addNatsOptions(command: Command): Command {
  return command
    .option('--nats <url>', 'NATS server URL(s), comma-separated (env NATS_URL)')
    .option('--creds <file>', 'NATS credentials file (env NATS_CREDS)')
    .option('--user <user>', 'NATS user (env NATS_USER)')
    .option('--password <password>', 'NATS password (env NATS_PASSWORD)')
    .option('--token <token>', 'NATS token (env NATS_TOKEN)')
    .option('--tls-ca <file>', 'CA certificate for TLS (env NATS_CA)')
    .option('--tls-cert <file>', 'client certificate for TLS (env NATS_CERT)')
    .option('--tls-key <file>', 'client key for TLS (env NATS_KEY)');
}

export interface NatsFlags {
  nats?: string;
  creds?: string;
  user?: string;
  password?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

export function natsSettingsFrom(flags: NatsFlags, env: NodeJS.ProcessEnv = process.env): NatsSettings {
  const fromEnv = natsSettingsFromEnv(env);
  return {
    url: flags.nats ?? fromEnv.url,
    credsFile: flags.creds ?? fromEnv.credsFile,
    user: flags.user ?? fromEnv.user,
    password: flags.password ?? fromEnv.password,
    token: flags.token ?? fromEnv.token,
    tlsCaFile: flags.tlsCa ?? fromEnv.tlsCaFile,
    tlsCertFile: flags.tlsCert ?? fromEnv.tlsCertFile,
    tlsKeyFile: flags.tlsKey ?? fromEnv.tlsKeyFile,
  };
}
