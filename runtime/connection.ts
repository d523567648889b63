// How every command and process reaches NATS: `--nats URL` or NATS_URL (the NATS ecosystem's
// convention), default nats://127.0.0.1:4222, plus credentials and TLS. Secrets are read from files
// here, when connecting, so they never need to be on a command line. A server that cannot be
// reached becomes a ConnectionError naming the URL, never a stack trace.
import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type NatsConnection,
  type ConnectionOptions,
} from '@nats-io/transport-node';
import { ConfigError, ConnectionError } from '../protocol/index.js';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** How to reach NATS; its flags and env variables are declared in cli/nats-options.ts. */
export interface NatsSettings {
  /** One URL or a comma-separated list of cluster URLs. */
  url: string;
  /** A NATS credentials file (user JWT and seed, decentralized auth). */
  credsFile?: string;
  /** A file holding a user nkey seed (`SU…`): the server's `authorization { users: [{ nkey }] }`. */
  nkeySeedFile?: string;
  user?: string;
  password?: string;
  /** A file holding the password (instead of `password`). */
  passwordFile?: string;
  token?: string;
  /** A file holding the token (instead of `token`). */
  tokenFile?: string;
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** A name the server shows for this connection (monitoring, logs). */
  name?: string;
}

export async function connectNats(
  settings: NatsSettings,
  extra: Partial<ConnectionOptions> = {},
): Promise<NatsConnection> {
  const servers = settings.url
    .split(',')
    .map((url) => url.trim())
    .filter(Boolean);
  const options: ConnectionOptions = {
    servers,
    name: settings.name,
    // The default gives up after 10 tries (FACTS.md); a stream processor keeps trying.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Request errors without async stack traces: building them cost 16% of a replaying thread
    // (one per KV write; bench/replay.ts profile), worker CPU −15% per event without them.
    noAsyncTraces: true,
    ...extra,
  };
  Object.assign(options, credentialsOf(settings));
  if (settings.tlsCaFile || settings.tlsCertFile) {
    options.tls = { caFile: settings.tlsCaFile, certFile: settings.tlsCertFile, keyFile: settings.tlsKeyFile };
  }
  try {
    return await connect(options);
  } catch (error) {
    throw new ConnectionError(`cannot reach NATS at ${servers.join(', ')}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * The connection options that say who this process is, from the settings: a creds file, an nkey
 * seed file, a user and password (or password file), or a token (or token file); at most one kind.
 */
export function credentialsOf(settings: NatsSettings): Partial<ConnectionOptions> {
  const given = [
    settings.credsFile !== undefined && 'a creds file',
    settings.nkeySeedFile !== undefined && 'an nkey seed file',
    settings.user !== undefined && 'a user',
    (settings.token ?? settings.tokenFile) !== undefined && 'a token',
  ].filter((kind) => kind !== false);
  if (given.length > 1) throw new ConfigError(`NATS credentials: give one kind, found ${given.join(' and ')}`);
  if (settings.password !== undefined && settings.passwordFile !== undefined)
    throw new ConfigError('NATS credentials: give the password or the password file, not both');
  if (settings.token !== undefined && settings.tokenFile !== undefined)
    throw new ConfigError('NATS credentials: give the token or the token file, not both');
  if ((settings.password ?? settings.passwordFile) !== undefined && settings.user === undefined)
    throw new ConfigError('NATS credentials: a password needs a user (--user or NATS_USER)');
  if (settings.credsFile !== undefined)
    return { authenticator: credsAuthenticator(readSecretFile('creds file', settings.credsFile)) };
  if (settings.nkeySeedFile !== undefined) {
    const seed = new TextDecoder().decode(readSecretFile('nkey seed file', settings.nkeySeedFile)).trim();
    if (!seed.startsWith('SU'))
      throw new ConfigError(`NATS nkey seed file ${settings.nkeySeedFile}: expected a user seed (SU…)`);
    return { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) };
  }
  if (settings.user !== undefined) {
    const pass =
      settings.passwordFile === undefined ? settings.password : secretText('password file', settings.passwordFile);
    return { user: settings.user, pass };
  }
  if (settings.tokenFile !== undefined) return { token: secretText('token file', settings.tokenFile) };
  if (settings.token !== undefined) return { token: settings.token };
  return {};
}

function readSecretFile(what: string, file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(`cannot read the NATS ${what} ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/** A secret file's text without the line break an editor or `echo` leaves at its end. */
function secretText(what: string, file: string): string {
  return new TextDecoder().decode(readSecretFile(what, file)).replace(/\r?\n$/, '');
}

/**
 * Whether a connection is up right now, kept from its status events (nats.js has no
 * isConnected): false from a `disconnect` until the next `reconnect`, and once closed. For
 * readiness probes.
 */
export function watchConnection(nc: NatsConnection): { readonly connected: boolean } {
  let up = true;
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') up = false;
      else if (status.type === 'reconnect') up = true;
    }
  })();
  return {
    get connected() {
      return up && !nc.isClosed();
    },
  };
}
