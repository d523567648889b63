// Secrets never on a command line: a real nats-server that wants a user and password, or a token,
// and `kappa topic list` given them as files (flags or env naming the files). A secret given as a
// flag still works but warns on stderr; a wrong secret in the file is refused by the server.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kappa } from './harness/cli.js';
import { useNatsServer } from './harness/use-nats.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function secretFile(name: string, content: string): string {
  const file = join(dir, name);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

/** Environment without any NATS credential of the machine running the tests. */
const clean = {
  NATS_USER: undefined,
  NATS_PASSWORD: undefined,
  NATS_PASSWORD_FILE: undefined,
  NATS_TOKEN: undefined,
  NATS_TOKEN_FILE: undefined,
  NATS_CREDS: undefined,
  NATS_NKEY_SEED_FILE: undefined,
};

describe('a server with a user and password', () => {
  const nats = useNatsServer({
    server: {
      extraConfig:
        'authorization { users: [ { user: kappa, password: "c0rrect horse" }, { user: sys, password: sys } ] }',
    },
    connection: { user: 'sys', pass: 'sys' },
  });

  it('takes the password from --password-file, or from the file NATS_PASSWORD_FILE names, without a warning', async () => {
    const file = secretFile('password', 'c0rrect horse\n');
    const byFlag = await kappa(['topic', 'list', '--nats', nats.url, '--user', 'kappa', '--password-file', file], {
      env: clean,
    });
    expect(byFlag.stderr).toBe('');
    expect(byFlag.code).toBe(0);
    const byEnv = await kappa(['topic', 'list', '--nats', nats.url], {
      env: { ...clean, NATS_USER: 'kappa', NATS_PASSWORD_FILE: file },
    });
    expect(byEnv.stderr).toBe('');
    expect(byEnv.code).toBe(0);
  });

  it('is refused by the server with a wrong password in the file', async () => {
    const file = secretFile('wrong-password', 'battery staple\n');
    const result = await kappa(['topic', 'list', '--nats', nats.url, '--user', 'kappa', '--password-file', file], {
      env: clean,
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Authorization Violation|authorization/i);
  });

  it('still takes --password, warning on stderr that ps shows it', async () => {
    const result = await kappa(
      ['topic', 'list', '--nats', nats.url, '--user', 'kappa', '--password', 'c0rrect horse'],
      {
        env: clean,
      },
    );
    expect(result.code).toBe(0);
    expect(result.stderr).toBe(
      "kappa: warning: --password puts a secret on the command line, where ps and the shell's history show it; use --password-file or NATS_PASSWORD_FILE\n",
    );
  });
});

describe('a server with a token', () => {
  const nats = useNatsServer({
    server: { extraConfig: 'authorization { token: "t0ken-in-a-file" }' },
    connection: { token: 't0ken-in-a-file' },
  });

  it('takes the token from --token-file or NATS_TOKEN_FILE, and refuses a wrong one', async () => {
    const file = secretFile('token', 't0ken-in-a-file\n');
    expect((await kappa(['topic', 'list', '--nats', nats.url, '--token-file', file], { env: clean })).code).toBe(0);
    expect(
      (await kappa(['topic', 'list', '--nats', nats.url], { env: { ...clean, NATS_TOKEN_FILE: file } })).code,
    ).toBe(0);
    const wrong = secretFile('wrong-token', 'guess\n');
    expect((await kappa(['topic', 'list', '--nats', nats.url, '--token-file', wrong], { env: clean })).code).not.toBe(
      0,
    );
    const warned = await kappa(['topic', 'list', '--nats', nats.url, '--token', 't0ken-in-a-file'], { env: clean });
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain('kappa: warning: --token puts a secret on the command line');
  });
});
