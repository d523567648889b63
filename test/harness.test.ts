import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { readPortsFile } from '../cli/local-nats-server.js';
import { freePort, NatsCluster, startServer } from './harness/nats-server.js';
import { PollError, pollUntil } from './harness/poll.js';
import { useNatsCluster, useNatsServer } from './harness/use-nats.js';

const ROOT = resolve(import.meta.dirname, '..');

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

describe('a 3-node cluster', () => {
  const nats = useNatsCluster();

  it('forms a 3-node JetStream cluster that keeps an R3 stream through the loss of one node', async () => {
    const jsm = await jetstreamManager(nats.nc);
    await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
    const info = await jsm.streams.info('R3');
    expect(info.cluster?.replicas?.length).toBe(2);
    await nats.cluster.nodes[2]!.kill();
    const js = jsm.jetstream();
    // While the stream elects a new leader the publish finds no responder; a client retries.
    const ack = await pollUntil(() => js.publish('r3.a', 'x', { msgID: 'first', timeout: 2_000 }), {
      what: 'a publish to the R3 stream acknowledged',
      until: () => true,
      timeoutMs: 15_000,
    });
    expect(ack.seq).toBe(1);
    await nats.cluster.nodes[2]!.restart();
  });
});

it('starts a cluster on fresh route ports when a port it picked was taken before its node could bind it', async () => {
  // Something else listens on the first route port the cluster picks, as when another test file's
  // server took it between the pick and the bind.
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  const taken = (squatter.address() as AddressInfo).port;
  const picked: number[] = [];
  const pickRoutePort = async () => {
    const port = picked.length === 0 ? taken : await freePort();
    picked.push(port);
    return port;
  };
  try {
    const cluster = await NatsCluster.start(3, { pickRoutePort });
    try {
      expect(picked).toHaveLength(6);
      expect(cluster.nodes.map((node) => node.clusterPort)).toEqual(picked.slice(3));
      const nc = await connect({ servers: cluster.urls });
      await (await jetstreamManager(nc)).streams.add({ name: 'RACE', subjects: ['race.>'], num_replicas: 3 });
      await nc.close();
    } finally {
      await cluster.stopAll();
    }
  } finally {
    squatter.close();
  }
});

describe('useNatsServer', () => {
  const nats = useNatsServer();
  // Read while the file is collected, before the scope's beforeAll has started anything.
  const earlyRead = (() => {
    try {
      return nats.nc;
    } catch (error) {
      return error as Error;
    }
  })();

  it('gives the scope a started server and a connection to it', async () => {
    expect(nats.url).toBe(nats.server.url);
    expect(nats.server.running).toBe(true);
    expect(nats.nc.isClosed()).toBe(false);
    await nats.nc.flush();
  });

  it('refuses to be read outside the tests and hooks of its scope', () => {
    expect(earlyRead).toBeInstanceOf(Error);
    expect((earlyRead as Error).message).toMatch(
      /^useNatsServer\(\)\.nc read outside the tests and hooks of the scope that called useNatsServer\(\)/,
    );
  });
});

describe('pollUntil', () => {
  it('returns the first value that ends the wait, counting errors and undefined, null and false as "not yet"', async () => {
    const answers: unknown[] = [undefined, null, false, new Error('not up yet'), 0];
    let probes = 0;
    const value = await pollUntil(
      () => {
        const answer = answers[probes++];
        if (answer instanceof Error) throw answer;
        return answer as number | undefined | null | false;
      },
      { what: 'the answer', timeoutMs: 5_000, intervalMs: 1 },
    );
    expect(value).toBe(0);
    expect(probes).toBe(5);
  });

  it('times out naming what it waited for, the last value and the last error', async () => {
    const started = Date.now();
    let probes = 0;
    const failure = await pollUntil(
      () => {
        probes++;
        if (probes === 1) throw new Error('connection refused');
        return { workers: probes };
      },
      {
        what: '3 workers registered',
        until: (status) => status.workers === -1,
        timeoutMs: 200,
        intervalMs: 20,
        context: () => 'logs: nothing',
      },
    ).catch((error: unknown) => error);
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect(failure).toBeInstanceOf(PollError);
    const message = (failure as PollError).message;
    expect(message).toMatch(
      new RegExp(
        `^timed out after 200 ms waiting for 3 workers registered; last value: \\{"workers":${probes}\\}; last error: connection refused\nlogs: nothing$`,
      ),
    );
    expect((failure as PollError).cause).toEqual(new Error('connection refused'));
  });

  it('gives up at once when giveUpIf returns a reason', async () => {
    const started = Date.now();
    const failure = await pollUntil(() => undefined, {
      what: 'a log line',
      timeoutMs: 10_000,
      intervalMs: 10,
      giveUpIf: () => 'the process exited with code 1',
    }).catch((error: unknown) => error as Error);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(failure.message).toBe(
      'gave up (the process exited with code 1) waiting for a log line; last value: undefined',
    );
  });
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
    const result = await run(
      process.execPath,
      [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/harness/fixtures/vitest.config.ts'],
      {
        KAPPA_FIXTURE_OUT: out,
      },
    );
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
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/harness/fixtures/start-servers-and-wait.ts'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let dirs: string[] = [];
  try {
    await pollUntil(() => stdout.includes('\n'), {
      what: 'the line of started servers',
      timeoutMs: 30_000,
      intervalMs: 50,
      giveUpIf: () => (child.exitCode === null ? undefined : `the child exited with code ${child.exitCode}`),
    });
    const started = JSON.parse(stdout) as { pids: number[]; dirs: string[] };
    const pids = started.pids;
    dirs = started.dirs;
    expect(pids.filter(alive)).toHaveLength(4);
    child.kill('SIGKILL');
    await exited;
    await pollUntil(() => pids.filter(alive), {
      what: 'every server process gone',
      until: (living) => living.length === 0,
      timeoutMs: 5_000,
      intervalMs: 50,
    });
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

function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}
