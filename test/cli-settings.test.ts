// The settings declaration (cli/settings.ts): each setting declared once with its flag, env
// variable, schema and help. Loading merges a config file < the environment < flags, a bad value
// is one ConfigError naming the setting and where it came from, and --help shows every env
// variable and default from the declaration. No server: commander parses the flags as `kappa` would.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../protocol/index.js';
import { natsConnection } from '../cli/nats-options.js';
import { byteSize, duration, logLevel, positiveInt } from '../cli/setting-values.js';
import { defineSettings } from '../cli/settings.js';
import { credentialsOf } from '../runtime/index.js';
import { kappa } from './harness/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-settings-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const settings = defineSettings(
  {
    job: {
      flag: '--job <file>',
      env: 'T_JOB',
      repeatable: true,
      schema: z.union([z.string(), z.array(z.string())]).optional(),
      help: 'job module',
    },
    standalone: { flag: '--standalone', schema: z.boolean().default(false), help: 'no coordinator' },
    threads: {
      flag: '--threads <n>',
      env: 'T_THREADS',
      schema: positiveInt.default(4),
      shownDefault: 'cores',
      help: 'task threads',
    },
    batch: { flag: '--batch <n>', schema: positiveInt.default(10_000), help: 'largest batch' },
    checkpointInterval: {
      flag: '--checkpoint-interval <duration>',
      env: 'T_CHECKPOINT_INTERVAL',
      schema: duration.default(10_000),
      help: 'checkpoint this often',
    },
    dlqMaxBytes: {
      flag: '--dlq-max-bytes <size>',
      env: 'T_DLQ_MAX_BYTES',
      schema: byteSize.default(1024 ** 3),
      help: 'dead letters kept',
    },
    logLevel: { flag: '--log-level <level>', env: 'T_LOG_LEVEL', schema: logLevel.default('info'), help: 'log level' },
    nats: natsConnection,
  },
  { configFile: true },
);

/** Parses argv as commander would for a command with these settings, and loads them. */
function load(argv: string[], env: NodeJS.ProcessEnv = {}, warnings: string[] = []) {
  const command = settings.addOptions(new Command('test').exitOverride());
  command.parse(argv, { from: 'user' });
  return settings.load(command.opts(), env, (warning) => warnings.push(warning));
}

function configFile(content: unknown): string {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function loadError(argv: string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    load(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('CONFIG_INVALID');
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('defineSettings: loading', () => {
  it('applies the defaults when no source gives a value, parsed into their kinds', () => {
    expect(load([])).toEqual({
      job: undefined,
      standalone: false,
      threads: 4,
      batch: 10_000,
      checkpointInterval: 10_000,
      dlqMaxBytes: 1024 ** 3,
      logLevel: 'info',
      nats: {
        url: 'nats://127.0.0.1:4222',
        credsFile: undefined,
        nkeySeedFile: undefined,
        user: undefined,
        password: undefined,
        passwordFile: undefined,
        token: undefined,
        tokenFile: undefined,
        tlsCaFile: undefined,
        tlsCertFile: undefined,
        tlsKeyFile: undefined,
      },
    });
  });

  it('types the compiled settings from the declarations (checked by npm run typecheck)', () => {
    const loaded = load([]);
    expectTypeOf(loaded.threads).toEqualTypeOf<number>();
    expectTypeOf(loaded.standalone).toEqualTypeOf<boolean>();
    expectTypeOf(loaded.logLevel).toEqualTypeOf<'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'>();
    expectTypeOf(loaded.nats.url).toEqualTypeOf<string>();
    expectTypeOf(loaded.nats.token).toEqualTypeOf<string | undefined>();
  });

  it('takes a config file over the defaults, the environment over the file, and a flag over both', () => {
    const file = configFile({ threads: 2, batch: 500, checkpointInterval: '1m', logLevel: 'warn' });
    const env = { T_THREADS: '3', T_CHECKPOINT_INTERVAL: '30s', T_CONFIG_UNUSED: 'x' };
    const loaded = load(['--config', file, '--threads', '5'], env);
    expect(loaded).toMatchObject({ threads: 5, checkpointInterval: 30_000, batch: 500, logLevel: 'warn' });
    expect(load(['--config', file], env)).toMatchObject({ threads: 3 });
    expect(load(['--config', file])).toMatchObject({ threads: 2 });
  });

  it('reads the config file named by KAPPA_CONFIG when --config is not given, and ignores an empty env variable', () => {
    const file = configFile({ batch: 7 });
    expect(load([], { KAPPA_CONFIG: file, T_THREADS: '' })).toMatchObject({ batch: 7, threads: 4 });
  });

  it('collects a repeated flag into a list and reads a boolean flag', () => {
    expect(load(['--job', 'a.mjs', '--job', 'b.mjs', '--standalone'])).toMatchObject({
      job: ['a.mjs', 'b.mjs'],
      standalone: true,
    });
  });

  it('compiles a group (the NATS connection) into one nested object, from flags over env, under its own names', () => {
    const loaded = load(['--nats', 'nats://a:4222', '--tls-ca', 'ca.pem'], {
      NATS_URL: 'nats://env:4222',
      NATS_TOKEN: 's3cret',
      NATS_CA: 'env-ca.pem',
    });
    expect(loaded.nats).toMatchObject({ url: 'nats://a:4222', token: 's3cret', tlsCaFile: 'ca.pem' });
  });

  it('names the setting and its source when a value is bad: a flag, an env variable, a config file', () => {
    expect(loadError(['--threads', '0']).message).toBe(
      "setting 'threads' (from flag --threads): Too small: expected number to be >0",
    );
    expect(loadError(['--dlq-max-bytes', '1 XB']).message).toMatch(
      /^setting 'dlqMaxBytes' \(from flag --dlq-max-bytes\): expected a size such as .* found "1 XB"$/,
    );
    expect(loadError([], { T_CHECKPOINT_INTERVAL: 'soon' }).message).toMatch(
      /^setting 'checkpointInterval' \(from environment variable T_CHECKPOINT_INTERVAL\): expected a duration such as 500, '5s' or '1m', found "soon"$/,
    );
    const file = configFile({ logLevel: 'loud' });
    expect(loadError(['--config', file]).message).toMatch(
      new RegExp(`^setting 'logLevel' \\(from config file ${file}\\): `),
    );
  });

  it('refuses a config file with a setting it does not declare (the NATS connection is flags and env only), or that is not a JSON object', () => {
    const file = configFile({ threads: 2, url: 'nats://x:4222', colour: 'red' });
    expect(loadError(['--config', file]).message).toBe(`unknown setting(s) url, colour in ${file}`);
    const array = configFile([1]);
    expect(loadError(['--config', array]).message).toBe(`config file ${array} must hold a JSON object`);
    expect(loadError(['--config', join(dir, 'missing.json')]).message).toMatch(
      /^cannot read config file .*missing\.json: ENOENT/,
    );
  });

  it('exposes the schema of the file/env/flag settings, defaults included (the deployment tests read it)', () => {
    expect(settings.schema.parse({}).threads).toBe(4);
    expect(Object.keys(settings.schema.shape)).not.toContain('nats');
  });
});

describe('secrets', () => {
  it('warns once per secret given as a flag, naming the file and env ways to give it, and still takes it', () => {
    const warnings: string[] = [];
    const loaded = load(['--password', 'pw', '--token', 'tk', '--user', 'u'], {}, warnings);
    expect(loaded.nats).toMatchObject({ user: 'u', password: 'pw', token: 'tk' });
    expect(warnings).toEqual([
      "--password puts a secret on the command line, where ps and the shell's history show it; use --password-file or NATS_PASSWORD_FILE",
      "--token puts a secret on the command line, where ps and the shell's history show it; use --token-file or NATS_TOKEN_FILE",
    ]);
  });

  it('says nothing when a secret comes from the environment or a file is named', () => {
    const warnings: string[] = [];
    const loaded = load(
      ['--password-file', '/run/secrets/pw', '--nkey-seed-file', '/run/secrets/seed'],
      { NATS_TOKEN: 'tk', NATS_TOKEN_FILE: '/run/secrets/token', NATS_PASSWORD_FILE: '/env/pw' },
      warnings,
    );
    expect(warnings).toEqual([]);
    expect(loaded.nats).toMatchObject({
      passwordFile: '/run/secrets/pw',
      nkeySeedFile: '/run/secrets/seed',
      token: 'tk',
      tokenFile: '/run/secrets/token',
    });
  });

  it('reads the password and token files when connecting, without their final line break', () => {
    const password = join(dir, 'password');
    writeFileSync(password, 'p@ss word\n');
    const token = join(dir, 'token');
    writeFileSync(token, 'tok3n\r\n');
    expect(credentialsOf({ url: '', user: 'kappa', passwordFile: password })).toEqual({
      user: 'kappa',
      pass: 'p@ss word',
    });
    expect(credentialsOf({ url: '', tokenFile: token })).toEqual({ token: 'tok3n' });
    expect(credentialsOf({ url: '', token: 'inline' })).toEqual({ token: 'inline' });
    expect(credentialsOf({ url: '' })).toEqual({});
  });

  it('refuses an unreadable secret file, two kinds of credentials, a value and its file, or a password without a user', () => {
    const refused = (settings: Parameters<typeof credentialsOf>[0]) => {
      try {
        credentialsOf(settings);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as ConfigError).message;
      }
      throw new Error('expected a ConfigError');
    };
    expect(refused({ url: '', tokenFile: join(dir, 'none') })).toMatch(
      /^cannot read the NATS token file .*none: ENOENT/,
    );
    expect(refused({ url: '', token: 't', nkeySeedFile: 'seed' })).toBe(
      'NATS credentials: give one kind, found an nkey seed file and a token',
    );
    expect(refused({ url: '', token: 't', tokenFile: 'f' })).toBe(
      'NATS credentials: give the token or the token file, not both',
    );
    expect(refused({ url: '', user: 'u', password: 'p', passwordFile: 'f' })).toBe(
      'NATS credentials: give the password or the password file, not both',
    );
    expect(refused({ url: '', passwordFile: 'f' })).toBe(
      'NATS credentials: a password needs a user (--user or NATS_USER)',
    );
    const notSeed = join(dir, 'not-a-seed');
    writeFileSync(notSeed, 'hello\n');
    expect(refused({ url: '', nkeySeedFile: notSeed })).toBe(
      `NATS nkey seed file ${notSeed}: expected a user seed (SU…)`,
    );
  });
});

describe('defineSettings: help', () => {
  const help = settings.addOptions(new Command('test')).helpInformation().replace(/\s+/g, ' ');

  it('shows each setting with its env variable and default in the units of its kind', () => {
    expect(help).toContain('--threads <n> task threads (env T_THREADS, default cores)');
    expect(help).toContain('--batch <n> largest batch (default 10000)');
    expect(help).toContain(
      '--checkpoint-interval <duration> checkpoint this often (env T_CHECKPOINT_INTERVAL, default 10s)',
    );
    expect(help).toContain('--dlq-max-bytes <size> dead letters kept (env T_DLQ_MAX_BYTES, default 1GiB)');
    expect(help).toContain('--log-level <level> log level (env T_LOG_LEVEL, default info)');
    expect(help).toContain('--job <file> job module (env T_JOB)');
    expect(help).toContain('--standalone no coordinator');
  });

  it('lists --config after the settings it may hold, then the NATS connection with its env variables', () => {
    expect(help).toContain('--config <file> JSON file with any of the settings above (env KAPPA_CONFIG) --nats <url>');
    expect(help).toContain(
      '--nats <url> NATS server URL(s), comma-separated (env NATS_URL, default nats://127.0.0.1:4222)',
    );
    expect(help).toContain('--tls-key <file> client key for TLS (env NATS_KEY)');
  });

  it('shows every flag and env variable kappa worker reads in its --help', async () => {
    const result = await kappa(['worker', '--help']);
    expect(result.code).toBe(0);
    const text = result.stdout.replace(/\s+/g, ' ');
    for (const env of [
      'KAPPA_JOB',
      'KAPPA_THREADS',
      'KAPPA_WORKER_ID',
      'KAPPA_STATE_DIR',
      'KAPPA_HTTP_PORT',
      'KAPPA_HTTP_HOST',
      'KAPPA_CHECKPOINT_INTERVAL',
      'KAPPA_CHECKPOINT_EVENTS',
    ]) {
      expect(text).toContain(`env ${env}`);
    }
    expect(text).toContain('(env KAPPA_STATE_DIR, default .kappa/state)');
    expect(text).toContain('(env KAPPA_DLQ_MAX_AGE, default 7d)');
  });
});

describe('kappa with a bad setting', () => {
  it('exits 2 with one line naming the setting and the flag it came from', async () => {
    const result = await kappa(['worker', '--job', 'examples/clicks-per-window.mjs', '--threads', '0'], {
      env: { KAPPA_THREADS: undefined, KAPPA_CONFIG: undefined },
    });
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe(
      "kappa: setting 'threads' (from flag --threads): Too small: expected number to be >0",
    );
  });

  it('exits 2 naming the env variable for the coordinator, whose settings are declared the same way', async () => {
    const result = await kappa(['coordinator'], { env: { KAPPA_SESSION_TIMEOUT: 'never', KAPPA_CONFIG: undefined } });
    expect(result.code).toBe(2);
    expect(result.stderr.trim()).toBe(
      `kappa: setting 'sessionTimeout' (from environment variable KAPPA_SESSION_TIMEOUT): expected a duration such as 6000 or '6s', found "never"`,
    );
  });
});
