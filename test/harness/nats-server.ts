// Spawns real nats-server processes for tests: a single JetStream server or a 3-node JetStream
// cluster, each on random ports (`port: -1` plus a ports file, as nats.js's own tests do; a
// cluster's route ports are picked just before, and the cluster started again on fresh ones when
// one was taken meanwhile) with its own store dir. Kill, pause/resume and restart helpers drive
// failure tests.
//
// No server outlives its test file: every one is tracked and stopped after the file whatever its
// outcome (test/harness/setup.ts, a vitest setup file, calls stopAllServers), and each is spawned
// to die with the test process, so a crashed or SIGKILLed test worker leaves none running.
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
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

export interface ClusterStartOptions {
  /** Picks a free TCP port for a node's routes (default `freePort`); tests replace it to provoke a lost port race. */
  pickRoutePort?: () => Promise<number>;
}

/**
 * How many times a cluster start is tried when a node could not bind the route port picked for it:
 * another process (a server of another test file, or one of this cluster's `-1` ports) took it
 * between the pick and the bind.
 */
const CLUSTER_START_ATTEMPTS = 3;

/** A 3-node (by default) JetStream cluster on random ports; node 0 is the route seed. */
export class NatsCluster {
  private constructor(
    readonly nodes: NatsServer[],
    private readonly dir: string,
  ) {}

  /**
   * Starts the nodes and waits for a JetStream meta leader. A JetStream cluster refuses to start
   * without configured routes, so unlike the client and monitoring ports (`-1`, read back from the
   * ports file) the route ports are picked before the nodes start; when one of them was taken in
   * between, the whole cluster is started again on freshly picked ports.
   */
  static async start(size = 3, options: ClusterStartOptions = {}): Promise<NatsCluster> {
    const pickRoutePort = options.pickRoutePort ?? freePort;
    for (let attempt = 1; ; attempt++) {
      const routePorts: number[] = [];
      for (let index = 0; index < size; index++) routePorts.push(await pickRoutePort());
      const cluster = NatsCluster.configure(routePorts);
      // Tracked before it starts: a cluster whose start fails half-way is still stopped.
      allServers.add(cluster);
      const started = await Promise.allSettled(cluster.nodes.map((node) => node.start()));
      const failure = started.find((result) => result.status === 'rejected');
      if (failure === undefined) {
        await cluster.waitForJetStream();
        return cluster;
      }
      const lostPortRace = cluster.nodes.some((node) => lostRoutePort(node));
      await cluster.stopAll();
      if (!lostPortRace || attempt === CLUSTER_START_ATTEMPTS) throw failure.reason;
    }
  }

  /** The nodes of a cluster whose node `i` listens for routes on `routePorts[i]` and routes to all the others. */
  private static configure(routePorts: readonly number[]): NatsCluster {
    const dir = mkdtempSync(join(tmpdir(), 'kappa-natscluster-'));
    const clusterName = `kappa-test-${process.pid}`;
    const nodes = routePorts.map((routePort, index) => {
      const nodeDir = join(dir, `n${index}`);
      mkdirSync(nodeDir, { recursive: true });
      return new NatsServer(
        nodeDir,
        (self) => {
          self.clusterPort = routePort;
          const routes = routePorts
            .filter((port) => port !== routePort)
            .map((port) => `nats-route://127.0.0.1:${port}`);
          return [
            `server_name: n${index}`,
            `listen: 127.0.0.1:${self.clientPort}`,
            `http: 127.0.0.1:${self.monitorPort}`,
            `jetstream { store_dir: "${join(nodeDir, 'store')}" }`,
            `cluster { name: ${clusterName}, listen: 127.0.0.1:${routePort}, routes: [${routes.join(', ')}] }`,
          ].join('\n');
        },
        { dieWithParent: true },
      );
    });
    return new NatsCluster(nodes, dir);
  }

  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /**
   * Waits until the JetStream meta group has a leader that sees every running node as a current
   * peer: with a leader alone, an R3 stream created at once can still be refused ("no suitable
   * peers for placement") while a node has not joined the group yet.
   */
  async waitForJetStream(timeoutMs = 30_000): Promise<void> {
    await pollUntil(() => this.metaGroupComplete(), {
      what: `a JetStream meta leader with every node of the cluster in ${this.dir} as a current peer`,
      timeoutMs,
      intervalMs: 100,
    });
  }

  private async metaGroupComplete(): Promise<boolean> {
    const running = this.nodes.filter((n) => n.running);
    for (const node of running) {
      try {
        const response = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`);
        const body = (await response.json()) as {
          server_id?: string;
          meta_cluster?: { leader?: string; replicas?: { current?: boolean; offline?: boolean }[] };
        };
        const meta = body.meta_cluster;
        // The leader's view: the other members, each current and online.
        if (meta?.leader !== undefined && meta.leader === `n${this.nodes.indexOf(node)}`) {
          const peers = meta.replicas ?? [];
          return peers.length >= running.length - 1 && peers.every((peer) => peer.current && !peer.offline);
        }
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

/** Whether a node's log says it could not listen on its route port because something else had it. */
function lostRoutePort(node: NatsServer): boolean {
  let log: string;
  try {
    log = readFileSync(join(node.dir, 'server.log'), 'utf8');
  } catch {
    return false;
  }
  return /Error listening on router port: .*address already in use/.test(log);
}

/** Stops every server a test file started and has not closed (test/harness/setup.ts runs it after every file). */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...allServers].map((server) => server.stopAll()));
}
