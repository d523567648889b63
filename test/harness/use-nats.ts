// The NATS a test file (or a describe block) runs against: call `useNatsServer()` or
// `useNatsCluster()` in that scope and use the getters in its tests and hooks. It starts a real
// nats-server (a 3-node cluster) and connects before the scope's tests, and closes the connection
// and stops the server(s) after them, whatever happened.
//
// Call it before the scope registers hooks of its own: vitest runs "after" hooks in reverse order
// of registration, so the scope's own afterAll (kill the processes, drop the tables through `nc`)
// then runs while the server is still up.
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import type { ServerOptions } from '../../cli/local-nats-server.js';
import { NatsCluster, startServer, type NatsServer } from './nats-server.js';

export interface UseNatsOptions {
  /** 'file' (default): one server for every test of the scope; 'test': a fresh one for each test. */
  per?: 'file' | 'test';
  /** Options of the test's own connection (`servers` is set by the fixture). */
  connection?: Omit<ConnectionOptions, 'servers'>;
}

export interface NatsServerFixture {
  readonly server: NatsServer & { close(): Promise<void> };
  /** A connection the fixture opened to the server. */
  readonly nc: NatsConnection;
  /** The server's client URL. */
  readonly url: string;
}

export interface NatsClusterFixture {
  readonly cluster: NatsCluster;
  /** A connection the fixture opened to every node. */
  readonly nc: NatsConnection;
  /** Every node's client URL. */
  readonly urls: string[];
}

/** One JetStream nats-server on random ports, and a connection to it, for the calling scope. */
export function useNatsServer(options: UseNatsOptions & { server?: ServerOptions } = {}): NatsServerFixture {
  let server: (NatsServer & { close(): Promise<void> }) | undefined;
  let nc: NatsConnection | undefined;
  hooks(
    options.per,
    async () => {
      server = await startServer(options.server);
      nc = await connect({ ...options.connection, servers: server.url });
    },
    async () => {
      try {
        await nc?.close();
      } finally {
        // The server is stopped even when closing the connection failed.
        await server?.close();
        nc = undefined;
        server = undefined;
      }
    },
  );
  return {
    get server() {
      return present(server, 'useNatsServer', 'server');
    },
    get nc() {
      return present(nc, 'useNatsServer', 'nc');
    },
    get url() {
      return present(server, 'useNatsServer', 'url').url;
    },
  };
}

/** A JetStream cluster of `size` (default 3) nodes on random ports, and a connection to every node, for the calling scope. */
export function useNatsCluster(options: UseNatsOptions & { size?: number } = {}): NatsClusterFixture {
  let cluster: NatsCluster | undefined;
  let nc: NatsConnection | undefined;
  hooks(
    options.per,
    async () => {
      cluster = await NatsCluster.start(options.size ?? 3);
      nc = await connect({ ...options.connection, servers: cluster.urls });
    },
    async () => {
      try {
        await nc?.close();
      } finally {
        await cluster?.stopAll();
        nc = undefined;
        cluster = undefined;
      }
    },
  );
  return {
    get cluster() {
      return present(cluster, 'useNatsCluster', 'cluster');
    },
    get nc() {
      return present(nc, 'useNatsCluster', 'nc');
    },
    get urls() {
      return present(cluster, 'useNatsCluster', 'urls').urls;
    },
  };
}

function hooks(per: UseNatsOptions['per'], start: () => Promise<void>, stop: () => Promise<void>): void {
  if (per === 'test') {
    beforeEach(start);
    afterEach(stop);
  } else {
    beforeAll(start);
    afterAll(stop);
  }
}

/** A started thing, or an error saying it is read where the fixture has not started it. */
function present<T>(value: T | undefined, fixture: string, name: string): T {
  if (value === undefined) {
    throw new Error(
      `${fixture}().${name} read outside the tests and hooks of the scope that called ${fixture}(), or after its server was stopped`,
    );
  }
  return value;
}
