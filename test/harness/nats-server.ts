// Spawns real nats-server processes for tests: a single JetStream server or a 3-node JetStream
// cluster, each on random ports (`port: -1` plus a ports file, as nats.js's own tests do) with
// its own store dir. Kill, pause/resume and restart helpers drive failure tests.
//
// No server outlives its test file: every one is tracked and stopped after the file whatever its
// outcome (test/harness/setup.ts, a vitest setup file, calls stopAllServers), and each is spawned
// to die with the test process, so a crashed or SIGKILLed test worker leaves none running.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NatsServer, type ServerOptions } from '../../cli/local-nats-server.js';
import { pollUntil } from './poll.js';

export { NatsServer, NATS_SERVER_BINARY } from '../../cli/local-nats-server.js';

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

const allServers = new Set<{ stopAll(): Promise<void> }>();

/** Starts one JetStream-enabled server on random ports in a fresh temp dir. */
export async function startServer(options: ServerOptions = {}): Promise<NatsServer & { close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'kappa-nats-'));
  const server = new NatsServer(
    dir,
    (self) =>
      [
        `listen: 127.0.0.1:${self.clientPort}`,
        `http: 127.0.0.1:${self.monitorPort}`,
        `jetstream { store_dir: "${join(dir, 'store')}" }`,
        options.extraConfig ?? '',
      ].join('\n'),
    { dieWithParent: true },
  );
  const close = async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
    allServers.delete(handle);
  };
  const handle = { stopAll: close };
  // Tracked before it starts: a server that fails to report its ports is still stopped.
  allServers.add(handle);
  await server.start();
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
      const node = new NatsServer(
        nodeDir,
        (self) => {
          self.clusterPort = routePorts[index]!;
          const routes = routePorts
            .filter((port) => port !== self.clusterPort)
            .map((port) => `nats-route://127.0.0.1:${port}`);
          return [
            `server_name: n${index}`,
            `listen: 127.0.0.1:${self.clientPort}`,
            `http: 127.0.0.1:${self.monitorPort}`,
            `jetstream { store_dir: "${join(nodeDir, 'store')}" }`,
            `cluster { name: ${clusterName}, listen: 127.0.0.1:${self.clusterPort}, routes: [${routes.join(', ')}] }`,
          ].join('\n');
        },
        { dieWithParent: true },
      );
      nodes.push(node);
    }
    // Tracked before it starts: a cluster whose start fails half-way is still stopped.
    const cluster = new NatsCluster(nodes, dir);
    allServers.add(cluster);
    await Promise.all(nodes.map((node) => node.start()));
    await cluster.waitForJetStream();
    return cluster;
  }

  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** Waits until the JetStream meta group has a leader (streams can be created). */
  async waitForJetStream(timeoutMs = 30_000): Promise<void> {
    await pollUntil(() => this.anyNodeSeesMetaLeader(), {
      what: `a JetStream meta leader in the cluster in ${this.dir}`,
      timeoutMs,
      intervalMs: 100,
    });
  }

  private async anyNodeSeesMetaLeader(): Promise<boolean> {
    for (const node of this.nodes.filter((n) => n.running)) {
      try {
        const response = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`);
        const body = (await response.json()) as { meta_cluster?: { leader?: string } };
        if (body.meta_cluster?.leader) return true;
      } catch {
        // not up yet
      }
    }
    return false;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
    rmSync(this.dir, { recursive: true, force: true });
    allServers.delete(this);
  }
}

/** Stops every server a test file started and has not closed (test/harness/setup.ts runs it after every file). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...allServers].map((server) => server.stopAll()));
}
