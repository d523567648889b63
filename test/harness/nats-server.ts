// Spawns real nats-server processes for tests: a single JetStream server or a 3-node JetStream
// cluster, each on random ports (`port: -1` plus a ports file, as nats.js's own tests do) with
// its own store dir. Kill, pause/resume and restart helpers drive failure tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const NATS_SERVER_BINARY = process.env.NATS_SERVER_BIN ?? findNatsServer();

function findNatsServer(): string {
  const candidates = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];
  return candidates.find((candidate) => existsSync(candidate)) ?? 'nats-server';
}

interface PortsFile {
  nats?: string[];
  cluster?: string[];
  monitoring?: string[];
}

export interface ServerOptions {
  /** Extra configuration appended to the generated server config (nats-server syntax). */
  extraConfig?: string;
  /** Name of the server inside a cluster. */
  serverName?: string;
}

/** One nats-server process with its own store and config, restartable on the same ports. */
export class NatsServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  clientPort = -1;
  clusterPort = -1;
  monitorPort = -1;

  constructor(
    readonly dir: string,
    private readonly configBody: (server: NatsServer) => string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.clientPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts the process and waits until it has written its ports file and accepts clients. */
  async start(): Promise<void> {
    const portsDir = join(this.dir, 'ports');
    rmSync(portsDir, { recursive: true, force: true });
    mkdirSync(portsDir, { recursive: true });
    const configPath = join(this.dir, 'server.conf');
    writeFileSync(configPath, this.configBody(this) + `\nports_file_dir: "${portsDir}"\n`);
    const logPath = join(this.dir, 'server.log');
    const child = spawn(NATS_SERVER_BINARY, ['-c', configPath, '-l', logPath], { stdio: 'ignore' });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const startError = new Promise<never>((_, reject) =>
      child.once('error', (error) => reject(new Error(`cannot start ${NATS_SERVER_BINARY}: ${error.message}`))),
    );
    await Promise.race([this.waitForPorts(portsDir, logPath), startError]);
  }

  private async waitForPorts(portsDir: string, logPath: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (!this.running) break;
      const file = readdirSync(portsDir).find((name) => name.endsWith('.ports'));
      if (file) {
        const ports = JSON.parse(readFileSync(join(portsDir, file), 'utf8')) as PortsFile;
        this.clientPort = portOf(ports.nats?.[0]) ?? this.clientPort;
        this.clusterPort = portOf(ports.cluster?.[0]) ?? this.clusterPort;
        this.monitorPort = portOf(ports.monitoring?.[0]) ?? this.monitorPort;
        return;
      }
      await sleep(20);
    }
    let log = '';
    try {
      log = readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      // no log written
    }
    throw new Error(`nats-server in ${this.dir} did not report its ports within 15 s\n${log}`);
  }

  /** SIGKILL: the process dies without flushing or saying goodbye. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child?.kill('SIGKILL');
    await this.exited;
  }

  /** SIGSTOP: the process freezes, its sockets stay open. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** SIGCONT after pause(). */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Graceful stop (SIGTERM). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child?.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills (if running) and starts again on the same ports with the same store. */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }
}

/** A TCP port that was free a moment ago (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

function portOf(address: string | undefined): number | undefined {
  if (!address) return undefined;
  const match = /:(\d+)$/.exec(address);
  return match ? Number(match[1]) : undefined;
}

const allServers = new Set<{ stopAll(): Promise<void> }>();

/** Starts one JetStream-enabled server on random ports in a fresh temp dir. */
export async function startServer(options: ServerOptions = {}): Promise<NatsServer & { close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'kappa-nats-'));
  const server = new NatsServer(dir, (self) =>
    [
      `listen: 127.0.0.1:${self.clientPort}`,
      `http: 127.0.0.1:${self.monitorPort}`,
      `jetstream { store_dir: "${join(dir, 'store')}" }`,
      options.extraConfig ?? '',
    ].join('\n'),
  );
  await server.start();
  const close = async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
    allServers.delete(handle);
  };
  const handle = { stopAll: close };
  allServers.add(handle);
  return Object.assign(server, { close });
}

/** A 3-node (by default) JetStream cluster on random ports; node 0 is the route seed. */
export class NatsCluster {
  private constructor(
    readonly nodes: NatsServer[],
    private readonly dir: string,
  ) {}

  static async start(size = 3): Promise<NatsCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'kappa-natscluster-'));
    const nodes: NatsServer[] = [];
    // A JetStream cluster refuses to start without routes, so route ports are chosen up front.
    const routePorts: number[] = [];
    for (let index = 0; index < size; index++) routePorts.push(await freePort());
    const clusterName = `kappa-test-${process.pid}`;
    for (let index = 0; index < size; index++) {
      const nodeDir = join(dir, `n${index}`);
      mkdirSync(nodeDir, { recursive: true });
      const node = new NatsServer(nodeDir, (self) => {
        self.clusterPort = routePorts[index]!;
        const routes = routePorts.filter((port) => port !== self.clusterPort).map((port) => `nats-route://127.0.0.1:${port}`);
        return [
          `server_name: n${index}`,
          `listen: 127.0.0.1:${self.clientPort}`,
          `http: 127.0.0.1:${self.monitorPort}`,
          `jetstream { store_dir: "${join(nodeDir, 'store')}" }`,
          `cluster { name: ${clusterName}, listen: 127.0.0.1:${self.clusterPort}, routes: [${routes.join(', ')}] }`,
        ].join('\n');
      });
      nodes.push(node);
    }
    await Promise.all(nodes.map((node) => node.start()));
    const cluster = new NatsCluster(nodes, dir);
    allServers.add(cluster);
    await cluster.waitForJetStream();
    return cluster;
  }

  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** Waits until the JetStream meta group has a leader (streams can be created). */
  async waitForJetStream(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const node of this.nodes.filter((n) => n.running)) {
        try {
          const response = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`);
          const body = (await response.json()) as { meta_cluster?: { leader?: string } };
          if (body.meta_cluster?.leader) return;
        } catch {
          // not up yet
        }
      }
      await sleep(100);
    }
    throw new Error(`JetStream cluster in ${this.dir} elected no meta leader within ${timeoutMs} ms`);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    rmSync(this.dir, { recursive: true, force: true });
    allServers.delete(this);
  }
}

/** Stops every server a test file started and forgot; call from afterAll. */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...allServers].map((server) => server.stopAll()));
}
