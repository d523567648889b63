// The NATS connection settings every command shares (the NATS ecosystem's flag and env names):
// flags win over environment variables. A process with settings of its own takes them as a group
// (`nats: natsConnection` in its defineSettings), so its compiled settings carry one NatsSettings;
// a command that only connects adds them with addNatsOptions and reads them with natsSettingsFrom.
import type { Command } from 'commander';
import { z } from 'zod';
import { DEFAULT_NATS_URL, type NatsSettings } from '../runtime/index.js';
import { defineSettings } from './settings.js';

const file = z.string().optional();

/** Declared under NatsSettings' own names, so the compiled group is what connectNats takes. */
export const natsConnection = defineSettings({
  url: {
    flag: '--nats <url>',
    env: 'NATS_URL',
    schema: z.string().default(DEFAULT_NATS_URL),
    help: 'NATS server URL(s), comma-separated',
  },
  credsFile: { flag: '--creds <file>', env: 'NATS_CREDS', schema: file, help: 'NATS credentials file (JWT and seed)' },
  nkeySeedFile: {
    flag: '--nkey-seed-file <file>',
    env: 'NATS_NKEY_SEED_FILE',
    schema: file,
    help: "file holding the NATS user's nkey seed (kappa auth init writes one per role)",
  },
  user: { flag: '--user <user>', env: 'NATS_USER', schema: z.string().optional(), help: 'NATS user' },
  password: {
    flag: '--password <password>',
    env: 'NATS_PASSWORD',
    schema: z.string().optional(),
    secret: { instead: '--password-file or NATS_PASSWORD_FILE' },
    help: 'NATS password (prefer --password-file: a flag shows in ps)',
  },
  passwordFile: {
    flag: '--password-file <file>',
    env: 'NATS_PASSWORD_FILE',
    schema: file,
    help: 'file holding the NATS password',
  },
  token: {
    flag: '--token <token>',
    env: 'NATS_TOKEN',
    schema: z.string().optional(),
    secret: { instead: '--token-file or NATS_TOKEN_FILE' },
    help: 'NATS token (prefer --token-file: a flag shows in ps)',
  },
  tokenFile: { flag: '--token-file <file>', env: 'NATS_TOKEN_FILE', schema: file, help: 'file holding the NATS token' },
  tlsCaFile: { flag: '--tls-ca <file>', env: 'NATS_CA', schema: file, help: 'CA certificate for TLS' },
  tlsCertFile: { flag: '--tls-cert <file>', env: 'NATS_CERT', schema: file, help: 'client certificate for TLS' },
  tlsKeyFile: { flag: '--tls-key <file>', env: 'NATS_KEY', schema: file, help: 'client key for TLS' },
});

/** Commander's parsed options of a command that took addNatsOptions (and options of its own). */
export type NatsFlags = Readonly<Record<string, unknown>>;

export function addNatsOptions(command: Command): Command {
  return natsConnection.addOptions(command);
}

export function natsSettingsFrom(flags: NatsFlags, env: NodeJS.ProcessEnv = process.env): NatsSettings {
  return natsConnection.load(flags, env);
}
