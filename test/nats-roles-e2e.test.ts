// Kappa's roles on a real nats-server over TLS. `kappa auth init` writes one nkey seed per role and
// the server's authorization block; the server runs that block with a CA and certificates this test
// makes with openssl (clients verify the server, the server verifies the clients' certificates).
// Each role does its work: the admin creates the topic and starts the job, the producer publishes
// clicks, a coordinator and two workers run the job, the app (reader) reads its table, which equals
// the batch reference. Each role is refused what is not its work: a worker's credential sending
// `kappa.admin.retire`, a producer reading the table, an app publishing to the topic, a client
// without credentials; and nothing in the cluster changes.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buckets, streams, type ClusterStatus } from '../protocol/index.js';
import { authorizationBlock, rolePermissions, ROLES, type Role } from '../cli/nats-roles.js';
import { kappa, KappaProcess, type CliResult } from './harness/cli.js';
import { clickRange, clicksReference, type Click } from './harness/clicks.js';
import { leaderStatus } from './harness/cluster-status.js';
import { expectedResults, readTopicLog, viewedTable } from './harness/expected-results.js';
import { makeTestCertificates } from './harness/certificates.js';
import { NATS_SERVER_BINARY, startServer, type NatsServer } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';

const PARTITIONS = 4;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');

let dir: string;
let server: NatsServer & { close(): Promise<void> };
let admin: NatsConnection;
const processes: KappaProcess[] = [];
let coordinator: KappaProcess;

const tls = () => ({
  caFile: join(dir, 'ca.pem'),
  certFile: join(dir, 'client.pem'),
  keyFile: join(dir, 'client-key.pem'),
});
const seedOf = (role: Role) => join(dir, 'roles', `${role}.nk`);
/** The server's log lines about a refused publish or subscribe (or an unknown client). */
const violations = () =>
  readFileSync(join(server.dir, 'server.log'), 'utf8')
    .split('\n')
    .filter((line) => /Violation/.test(line));
/** A role's public key, as the server names the user in its log. */
const publicKeyOf = (role: Role) =>
  new RegExp(`# ${role}\\n\\s*\\{ nkey: (U[A-Z2-7]{55})`).exec(
    readFileSync(join(dir, 'roles', 'auth.conf'), 'utf8'),
  )![1]!;

/** The connection flags of a process that runs as `role` (undefined: TLS, no credentials). */
function as(role: Role | undefined): string[] {
  const { caFile, certFile, keyFile } = tls();
  return [
    '--nats',
    server.url,
    '--tls-ca',
    caFile,
    '--tls-cert',
    certFile,
    '--tls-key',
    keyFile,
    ...(role === undefined ? [] : ['--nkey-seed-file', seedOf(role)]),
  ];
}

/** No NATS settings of the machine running the tests leak into the processes. */
const clean: NodeJS.ProcessEnv = {
  NATS_URL: undefined,
  NATS_USER: undefined,
  NATS_PASSWORD: undefined,
  NATS_TOKEN: undefined,
  NATS_CREDS: undefined,
  NATS_NKEY_SEED_FILE: undefined,
  KAPPA_CONFIG: undefined,
};

function run(args: string[]): Promise<CliResult> {
  return kappa(args, { env: clean });
}

function spawn(args: string[]): KappaProcess {
  const child = new KappaProcess(args, clean);
  processes.push(child);
  return child;
}

function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  return pollUntil(probe, {
    what,
    timeoutMs,
    context: () =>
      [
        ...processes.map((p) => p.logs.slice(-1500)),
        readFileSync(join(server.dir, 'server.log'), 'utf8').slice(-3000),
      ].join('\n---\n'),
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-roles-'));
  makeTestCertificates(dir);
  const init = await run(['auth', 'init', '--dir', join(dir, 'roles')]);
  expect(init.code, init.stderr).toBe(0);
  const { caFile } = tls();
  server = await startServer({
    extraConfig: [
      `tls { cert_file: "${join(dir, 'server.pem')}", key_file: "${join(dir, 'server-key.pem')}", ca_file: "${caFile}", verify: true, timeout: 5 }`,
      readFileSync(join(dir, 'roles', 'auth.conf'), 'utf8'),
    ].join('\n'),
  });
  admin = await connect({
    servers: server.url,
    tls: tls(),
    authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(seedOf('admin'), 'utf8').trim())),
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  await admin?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('kappa auth init', () => {
  it('writes one seed per role, readable by its owner only, and an authorization block naming each public key', () => {
    const conf = readFileSync(join(dir, 'roles', 'auth.conf'), 'utf8');
    for (const role of ROLES) {
      expect(statSync(seedOf(role)).mode & 0o777).toBe(0o600);
      const seed = readFileSync(seedOf(role), 'utf8').trim();
      expect(seed).toMatch(/^SU[A-Z2-7]{56}$/);
      expect(conf).toContain(`# ${role}\n`);
      expect(conf).not.toContain(seed);
    }
    expect(conf.match(/nkey: U[A-Z2-7]{55}/g)).toHaveLength(ROLES.length);
  });

  it('narrows producers to the topics named, and puts the users in an account when one is named', () => {
    const users = Object.fromEntries(ROLES.map((role) => [role, `U${role.toUpperCase()}`])) as Record<Role, string>;
    const any = authorizationBlock(users);
    expect(any).toMatch(/# producer\n.*\n\s*publish: \{ allow: \["\*\.\*\.\*", .*deny: \["kappa\.>"/);
    const named = authorizationBlock(users, { topics: ['clicks', 'orders'], account: 'KAPPA' });
    expect(named).toMatch(
      /# producer\n.*\n\s*publish: \{ allow: \["clicks\.\*\.\*", "orders\.\*\.\*", "\$JS\.API\.INFO"/,
    );
    expect(named).toContain('accounts {\n  "KAPPA" {\n    jetstream: enabled\n    users = [');
    // Only the admin may send admin verbs: every other role that could match them denies them.
    for (const role of ['coordinator', 'worker'] as const)
      expect(rolePermissions()[role].publish.deny).toContain('kappa.admin.*');
    expect(rolePermissions().producer.publish.deny).toContain('kappa.>');
    expect(rolePermissions().reader.publish.allow.some((subject) => /^(kappa|\*)\./.test(subject))).toBe(false);
  });

  it('writes an account form that nats-server accepts, with JetStream for the account', async () => {
    const accountDir = join(dir, 'account-roles');
    const init = await run(['auth', 'init', '--dir', accountDir, '--account', 'KAPPA', '--topic', 'clicks']);
    expect(init.code, init.stderr).toBe(0);
    const config = join(accountDir, 'server.conf');
    writeFileSync(config, `jetstream { store_dir: "${join(accountDir, 'js')}" }\ninclude "auth.conf"\n`);
    const check = spawnSync(NATS_SERVER_BINARY, ['-c', config, '-t'], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toMatch(/configuration file .* is valid/);
    expect(readFileSync(join(accountDir, 'auth.conf'), 'utf8')).toMatch(/"KAPPA" \{\n\s+jetstream: enabled/);
  });

  it('refuses to overwrite seeds already there', async () => {
    const again = await run(['auth', 'init', '--dir', join(dir, 'roles')]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('already holds seeds for coordinator, worker, producer, reader, admin');
  });
});

describe('each role over TLS', () => {
  const clicks: Click[] = clickRange(0, 3000);
  let running: ClusterStatus;

  it('does its work: topic, produce, coordinator, two workers, start, and the app reads the table', async () => {
    // The admin records the key, so the producer never writes the topic registry.
    const created = await run([
      'topic',
      'create',
      'clicks',
      '--partitions',
      String(PARTITIONS),
      '--key',
      'user',
      ...as('admin'),
    ]);
    expect(created.code, created.stderr).toBe(0);
    const input = join(dir, 'clicks.jsonl');
    writeFileSync(input, clicks.map((click) => JSON.stringify(click)).join('\n') + '\n');
    const produced = await run([
      'produce',
      'clicks',
      '--file',
      input,
      '--key',
      'user',
      '--time',
      'ts',
      ...as('producer'),
    ]);
    expect(produced.code, produced.stderr).toBe(0);

    coordinator = spawn([
      'coordinator',
      '--id',
      'c1',
      '--http-port',
      '0',
      '--session-timeout',
      '3s',
      '--lease-ttl',
      '2s',
      ...as('coordinator'),
    ]);
    for (const id of ['w1', 'w2'])
      spawn([
        'worker',
        '--job',
        JOB,
        '--id',
        id,
        '--threads',
        '1',
        '--state-dir',
        join(dir, id),
        '--http-port',
        '0',
        // Checkpoints with state objects while the test runs: the Object Store's subjects too.
        '--checkpoint-interval',
        '1s',
        ...as('worker'),
      ]);
    await waitFor(
      '2 workers registered',
      async () => ((await leaderStatus(admin)).workers.length === 2 ? true : undefined),
      60_000,
    );
    const started = await run(['start', 'clicks', '--version', 'v1', ...as('admin')]);
    expect(started.code, started.stderr + started.stdout).toBe(0);

    const jsm = await jetstreamManager(admin);
    const last: number[] = [];
    for (let partition = 0; partition < PARTITIONS; partition++)
      last.push((await jsm.streams.info(streams.partition('clicks', partition))).state.last_seq);
    running = await waitFor(
      'every task running on both workers and caught up',
      async () => {
        const status = await leaderStatus(admin);
        const done =
          status.tasks.length === PARTITIONS &&
          status.tasks.every((task) => task.state === 'running' && task.sequence === last[task.partition]) &&
          new Set(status.tasks.map((task) => task.worker)).size === 2;
        return done ? status : undefined;
      },
      90_000,
    );

    const viewed = await run(['view', 'clicks', '--json', ...as('reader')]);
    expect(viewed.code, viewed.stderr).toBe(0);
    const table = viewedTable(viewed.stdout);
    const expected = expectedResults(
      await clicksReference(JOB),
      await readTopicLog<Click>(admin, 'clicks', PARTITIONS),
      PARTITIONS,
    );
    expect(expected.windows.size).toBeGreaterThan(100);
    expect(table).toEqual(expected.windows);

    // Every task committed checkpoints with their state in the Object Store, and in all of this the
    // server refused nothing: each role's permissions hold all it needed.
    await waitFor(
      'checkpoint state objects written',
      async () => ((await jsm.streams.info(`OBJ_${buckets.checkpointData}`)).state.messages > 0 ? true : undefined),
      30_000,
    );
    expect(violations()).toEqual([]);
  }, 240_000);

  it('refuses each role what is not its work, and nothing in the cluster changes', async () => {
    expect(running, 'the previous test ran the job').toBeDefined();
    const jsm = await jetstreamManager(admin);
    const sequences = async () => {
      const last: number[] = [];
      for (let partition = 0; partition < PARTITIONS; partition++)
        last.push((await jsm.streams.info(streams.partition('clicks', partition))).state.messages);
      return last;
    };
    const before = {
      sequences: await sequences(),
      table: (await run(['view', 'clicks', '--json', ...as('reader')])).stdout,
    };
    const refusals: [string, CliResult][] = [
      // A worker's credential sending an admin verb (retire would drop the table and checkpoints).
      ['worker retire', await run(['retire', 'clicks', '--version', 'v1', '--leader-timeout', '0', ...as('worker')])],
      // A producer sending one too, and reading the table.
      ['producer stop', await run(['stop', 'clicks', '--version', 'v1', '--leader-timeout', '0', ...as('producer')])],
      ['producer view', await run(['view', 'clicks', '--json', ...as('producer')])],
      // An app publishing to the topic.
      [
        'reader produce',
        await run([
          'produce',
          'clicks',
          '--file',
          join(dir, 'clicks.jsonl'),
          '--key',
          'user',
          '--time',
          'ts',
          '--retry-for',
          '0',
          ...as('reader'),
        ]),
      ],
    ];
    for (const [what, result] of refusals) {
      expect(result.code, `${what}: ${result.stdout}${result.stderr}`).not.toBe(0);
      // A refused request says so; a refused JetStream publish is seen as no PubAck by the producer.
      expect(result.stderr, what).toMatch(what === 'reader produce' ? /no ack from stream/ : /permission/i);
    }
    // The server refused each of them, by role, on the subject it was sent to.
    const refused = violations();
    for (const [role, subject] of [
      ['worker', '"kappa.admin.retire"'],
      ['producer', '"kappa.admin.stop"'],
      ['producer', '"$JS.API.DIRECT.GET.KV_kappa_aliases.'],
      ['reader', '"clicks.'],
    ] as const) {
      const key = publicKeyOf(role);
      expect(
        refused.some((line) => line.includes(key) && line.includes(subject)),
        `${role} refused on ${subject}:\n${refused.join('\n')}`,
      ).toBe(true);
    }
    // A client without credentials (TLS only) is not let in at all.
    const anonymous = await run(['status', '--leader-timeout', '0', ...as(undefined)]);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toMatch(/authorization violation/i);

    const after = await leaderStatus(admin);
    const ownership = (status: ClusterStatus) =>
      status.tasks.map((task) => `${task.partition}:${task.worker}@${task.epoch}:${task.state}`).sort();
    expect(ownership(after)).toEqual(ownership(running));
    const versions = (status: ClusterStatus) =>
      status.versions.map(({ job, version, state, tasksAssigned }) => ({ job, version, state, tasksAssigned }));
    expect(versions(after)).toEqual(versions(running));
    expect(versions(after)).toEqual([{ job: 'clicks', version: 'v1', state: 'running', tasksAssigned: PARTITIONS }]);
    expect(await sequences()).toEqual(before.sequences);
    const table = await run(['view', 'clicks', '--json', ...as('reader')]);
    expect(table.stdout).toEqual(before.table);
  }, 120_000);

  it("audits every admin request the coordinator answers with the sender's credential and the outcome", async () => {
    const rejected = await run(['cutover', 'clicks', '--version', 'v9', ...as('admin')]);
    expect(rejected.code).not.toBe(0);
    const audit = () =>
      coordinator.logs
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((line) => line.msg === 'audit');
    await waitFor(
      'the cutover audited',
      async () => (audit().some((line) => line.verb === 'cutover') ? true : undefined),
      10_000,
    );
    const origin = expect.stringMatching(/^.+@.+$/);
    expect(audit().filter((line) => line.verb !== 'status')).toEqual([
      expect.objectContaining({
        verb: 'start',
        principal: 'admin',
        principalKey: publicKeyOf('admin'),
        origin,
        job: 'clicks',
        version: 'v1',
        outcome: 'ok',
      }),
      expect.objectContaining({
        verb: 'cutover',
        principal: 'admin',
        principalKey: publicKeyOf('admin'),
        origin,
        job: 'clicks',
        version: 'v9',
        outcome: 'rejected',
        code: expect.any(String),
      }),
    ]);
    // The worker's retire and the producer's stop never reached it: the server refused them.
  }, 60_000);
});
