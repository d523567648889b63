// A worker outlasts a NATS that does not answer while it starts, like the coordinator
// (test/coordinator-nats-stall.test.ts): with its server down, or JetStream without a quorum so that
// its requests time out, it waits and retries (not ready meanwhile) instead of exiting with
// "cannot reach NATS" (exit 4) or a raw "TimeoutError: timeout", and once NATS answers it registers
// (pool) or runs its job (--standalone). Real nats-servers and the built `kappa worker`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createTopic } from '../client/index.js';
import { decodeMessage, subjects, type Message } from '../protocol/index.js';
import { connectNats } from '../runtime/index.js';
import { KappaProcess } from './harness/cli.js';
import { freePort, startServer } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';
import { useNatsCluster } from './harness/use-nats.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-worker-nats-stall-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const JOB_FILE = join(dir, 'echo.mjs');
writeFileSync(
  JOB_FILE,
  `export default {
  name: 'echo',
  version: 'v1',
  source: { topic: 'stall' },
  key: (event) => event.k,
  time: (event) => event.ts,
  watermark: { maxOutOfOrderness: 0 },
  actor: { onEvent: (ctx, event) => ctx.emit(event) },
};
`,
);

interface SpawnedWorker {
  process: KappaProcess;
  url: string;
}

async function worker(id: string, natsUrl: string, extra: string[] = []): Promise<SpawnedWorker> {
  const httpPort = await freePort();
  const process = new KappaProcess([
    'worker',
    ...['--job', JOB_FILE, '--id', id, '--nats', natsUrl, '--threads', '1'],
    ...['--http-port', String(httpPort), '--http-host', '127.0.0.1', '--state-dir', join(dir, id)],
    ...extra,
  ]);
  return { process, url: `http://127.0.0.1:${httpPort}` };
}

/** Waits until the worker logs a start-up wait for NATS (failing at once if it exits), then checks it is not ready. */
async function waitingForNats({ process, url }: SpawnedWorker): Promise<void> {
  await process.waitForLog(/"msg":"start-up: waiting for NATS"/, 30_000);
  expect((await fetch(`${url}/readyz`)).status).toBe(503);
}

/** Waits until /readyz answers 200. */
async function ready({ process, url }: SpawnedWorker): Promise<void> {
  await pollUntil(() => fetch(`${url}/readyz`).then((response) => response.ok || undefined), {
    what: 'the worker to be ready',
    timeoutMs: 30_000,
    giveUpIf: () =>
      process.child.exitCode === null ? undefined : `the worker exited with code ${process.child.exitCode}`,
    context: () => process.logs.slice(-3000),
  });
}

/** Waits until a worker.register or worker.heartbeat from `workerId` reaches the coordinators' subject. */
async function registers(natsUrl: string, workerId: string, spawned: SpawnedWorker): Promise<void> {
  const nc = await connectNats({ url: natsUrl });
  const heard: Message[] = [];
  nc.subscribe(subjects.workerToCoordinator, {
    callback: (_error, message) => {
      heard.push(decodeMessage(message.data));
    },
  });
  try {
    await pollUntil(
      () =>
        heard.find(
          (message) =>
            (message.type === 'worker.register' || message.type === 'worker.heartbeat') &&
            message.workerId === workerId,
        ),
      {
        what: `worker ${workerId} to register or heartbeat`,
        timeoutMs: 30_000,
        giveUpIf: () =>
          spawned.process.child.exitCode === null
            ? undefined
            : `the worker exited with code ${spawned.process.child.exitCode}`,
        context: () => spawned.process.logs.slice(-3000),
      },
    );
  } finally {
    await nc.close();
  }
}

describe('JetStream without a quorum while a pool worker starts', () => {
  const nats = useNatsCluster();

  it('retries creating its job streams while two of three nodes are SIGSTOPped, then becomes ready', async () => {
    const [reachable, ...stalled] = nats.cluster.nodes;
    for (const node of stalled) node.pause();
    const spawned = await worker('w-quorum', reachable!.url);
    try {
      await waitingForNats(spawned);
      expect(spawned.process.logs).toMatch(/creating the job streams: no answer in time/);
    } finally {
      for (const node of stalled) node.resume();
    }
    await ready(spawned);
    await registers(reachable!.url, 'w-quorum', spawned);
    expect(spawned.process.logs).not.toMatch(/^kappa: /m);
    expect(await spawned.process.stop()).toBe(0);
  });
});

describe('a nats-server that is down when the worker starts', () => {
  it('pool: waits, then registers and becomes ready once the server is up', async () => {
    const server = await startServer();
    try {
      await server.stop();
      const spawned = await worker('w-pool', server.url);
      await waitingForNats(spawned);
      expect(spawned.process.logs).toMatch(
        /connecting: cannot reach NATS at nats:\/\/127\.0\.0\.1:\d+: connection refused/,
      );
      await server.start();
      await registers(server.url, 'w-pool', spawned);
      await ready(spawned);
      expect(await spawned.process.stop()).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('--standalone: waits, then runs every partition of its job once the server is up', async () => {
    const server = await startServer();
    try {
      const nc = await connectNats({ url: server.url });
      await createTopic(nc, { name: 'stall', partitions: 2 });
      await nc.close();
      await server.stop();
      const spawned = await worker('w-standalone', server.url, ['--standalone']);
      await waitingForNats(spawned);
      await server.start();
      await ready(spawned);
      expect(spawned.process.logs).toMatch(/"msg":"standalone worker started"/);
      expect(await spawned.process.stop()).toBe(0);
    } finally {
      await server.close();
    }
  });
});
