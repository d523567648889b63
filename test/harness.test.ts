import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, expect, it } from 'vitest';
import { readPortsFile } from '../cli/local-nats-server.js';
import { NatsCluster, startServer, stopAllServers } from './harness/nats-server.js';

const ROOT = resolve(import.meta.dirname, '..');

afterAll(() => stopAllServers());

it('restarts a killed server on the same port with its JetStream store intact', async () => {
  const server = await startServer();
  const nc = await connect({ servers: server.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'H', subjects: ['h.>'] });
  await nc.close();
  const port = server.clientPort;
  await server.kill();
  expect(server.running).toBe(false);
  await server.restart();
  expect(server.clientPort).toBe(port);
  const again = await connect({ servers: server.url });
  const names = await (await jetstreamManager(again)).streams.names().next();
  expect(names).toContain('H');
  await again.close();
  await server.close();
});

it('forms a 3-node JetStream cluster that keeps an R3 stream through the loss of one node', async () => {
  const cluster = await NatsCluster.start(3);
  const nc = await connect({ servers: cluster.urls });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
  const info = await jsm.streams.info('R3');
  expect(info.cluster?.replicas?.length).toBe(2);
  await cluster.nodes[2]!.kill();
  const js = jsm.jetstream();
  // While the stream elects a new leader the publish finds no responder; a client retries.
  let ack;
  const deadline = Date.now() + 15_000;
  while (!ack) {
    try {
      ack = await js.publish('r3.a', 'x', { msgID: 'first', timeout: 2_000 });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  expect(ack.seq).toBe(1);
  await cluster.nodes[2]!.restart();
  await nc.close();
  await cluster.stopAll();
});

it('reads a ports file only once nats-server has written the whole JSON', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kappa-ports-'));
  try {
    const file = join(dir, 'nats-server_1.ports');
    // nats-server creates the file, then writes it: an early read sees nothing or half an object.
    writeFileSync(file, '');
    expect(readPortsFile(file)).toBeUndefined();
    writeFileSync(file, '{"nats":["nats://127.0.0.1:4222"],"monito');
    expect(readPortsFile(file)).toBeUndefined();
    writeFileSync(file, '{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://127.0.0.1:8222"]}');
    expect(readPortsFile(file)).toEqual({ nats: ['nats://127.0.0.1:4222'], monitoring: ['http://127.0.0.1:8222'] });
    expect(readPortsFile(join(dir, 'missing.ports'))).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('stops and removes every server a failed test file left running', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kappa-fixture-'));
  const out = join(dir, 'servers.json');
  try {
    // A child vitest with the repository's config (its setup files) runs a test that starts a server
    // and a cluster and fails without closing them.
    const result = await run(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/harness/fixtures/vitest.config.ts'], {
      KAPPA_FIXTURE_OUT: out,
    });
    expect(result.code, result.output).toBe(1);
    expect(result.output).toMatch(/fails on purpose/);
    const { pids, dirs } = JSON.parse(readFileSync(out, 'utf8')) as { pids: number[]; dirs: string[] };
    expect(pids).toHaveLength(4);
    // Stopped by the harness (its store dir removed), not merely killed with the test process.
    expect(dirs.filter((serverDir) => existsSync(serverDir))).toEqual([]);
    expect(pids.filter(alive)).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

it('leaves no server running when the test process is SIGKILLed', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/harness/fixtures/start-servers-and-wait.ts'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let dirs: string[] = [];
  try {
    const deadline = Date.now() + 30_000;
    while (!stdout.includes('\n') && Date.now() < deadline && child.exitCode === null) await sleep(50);
    const started = JSON.parse(stdout) as { pids: number[]; dirs: string[] };
    const pids = started.pids;
    dirs = started.dirs;
    expect(pids.filter(alive)).toHaveLength(4);
    child.kill('SIGKILL');
    await exited;
    const gone = Date.now() + 5_000;
    while (pids.some(alive) && Date.now() < gone) await sleep(50);
    expect(pids.filter(alive)).toEqual([]);
  } finally {
    child.kill('SIGKILL');
    // Killed, not stopped: nothing removed their stores.
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

/** Whether a process exists and is not a zombie (a killed child of a dead parent is reaped by init). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}
