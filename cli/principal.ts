// Who this CLI is, as the principal headers of its admin requests say it (protocol/principal.ts):
// the credential's name (the role file `admin.nk` → 'admin', a creds file's name, the NATS user),
// the nkey's public key when it runs with one, and the operating-system user and host.
import { readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { basename, extname } from 'node:path';
import { headers, nkeys, type MsgHdrs } from '@nats-io/transport-node';
import { principalHeaders } from '../protocol/index.js';
import type { NatsSettings } from '../runtime/index.js';

export function principalOf(settings: NatsSettings): { name: string; key?: string; origin: string } {
  const origin = `${safeUserName()}@${hostname()}`;
  if (settings.nkeySeedFile !== undefined) {
    const name = basename(settings.nkeySeedFile, extname(settings.nkeySeedFile));
    // connectNats has read the seed already (a bad one ended the command there).
    const seed = readFileSync(settings.nkeySeedFile, 'utf8').trim();
    return { name, key: nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey(), origin };
  }
  if (settings.credsFile !== undefined)
    return { name: basename(settings.credsFile, extname(settings.credsFile)), origin };
  if (settings.user !== undefined) return { name: settings.user, origin };
  return { name: settings.token !== undefined || settings.tokenFile !== undefined ? 'token' : 'anonymous', origin };
}

/** The principal headers of an admin request. */
export function principalHeadersOf(settings: NatsSettings): MsgHdrs {
  const principal = principalOf(settings);
  const result = headers();
  result.set(principalHeaders.name, principal.name);
  if (principal.key !== undefined) result.set(principalHeaders.key, principal.key);
  result.set(principalHeaders.origin, principal.origin);
  return result;
}

function safeUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}
