// How every command and process reaches NATS: `--nats URL` or NATS_URL (the NATS ecosystem's
// convention), default nats://127.0.0.1:4222, plus credentials and TLS. A server that cannot be
// reached becomes a ConnectionError naming the URL, never a stack trace.
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, type NatsConnection, type ConnectionOptions } from '@nats-io/transport-node';
import { ConnectionError } from '../protocol/index.js';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** How to reach NATS; its flags and env variables are declared in cli/nats-options.ts. */
export interface NatsSettings {
  /** One URL or a comma-separated list of cluster URLs. */
  url: string;
  credsFile?: string;
  user?: string;
  password?: string;
  token?: string;
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
  if (settings.credsFile) options.authenticator = credsAuthenticator(readFileSync(settings.credsFile));
  if (settings.user) {
    options.user = settings.user;
    options.pass = settings.password;
  }
  if (settings.token) options.token = settings.token;
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
