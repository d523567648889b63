// The coordinator-driven worker pool, end to end: the built CLI (`kappa worker`, 2 threads)
// against a real nats-server, driven by a fake coordinator written here — a test double of the
// remote peer speaking the control protocol over real NATS. The expected serving table comes
// from `runBatch` over the same events, not from the worker.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopic, Producer } from '../client/index.js';
import {
  buckets,
  decodeMessage,
  liveRow,
  encodeMessage,
  servingTableRowKey,
  streams,
  subjects,
  type Message,
  type MessageOf,
  type TaskId,
  type TaskStatus,
} from '../protocol/index.js';
import { runBatch } from '../worker/batch-run.js';
import { validateJob } from '../worker/job.js';
import { KappaProcess } from './harness/cli.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 8;
const WORKER_ID = 'pool-test-1';

/** Running totals per customer: an actor job, so every event's effect is in the table. */
const TOTALS_JOB = `
export default {
  name: 'totals',
  version: 'v1',
  source: { topic: 'orders' },
  key: (order) => order.customer,
  time: (order) => order.ts,
  watermark: { maxOutOfOrderness: '1s' },
  actor: {
    onEvent: (ctx, order) => {
      const totals = ctx.value('totals');
      const before = totals.get() ?? { count: 0, sum: 0 };
      const after = { count: before.count + 1, sum: before.sum + order.amount };
      totals.set(after);
      ctx.emit(after);
    },
  },
};
`;

/** Crashes its thread (an uncaught error outside any task) on the first poison event ever seen. */
const crashJob = (marker: string) => `
import { existsSync, writeFileSync } from 'node:fs';
export default {
  name: 'crash',
  version: 'v1',
  source: { topic: 'crashes' },
  key: (event) => event.k,
  time: (event) => event.ts,
  watermark: { maxOutOfOrderness: 0 },
  actor: {
    onEvent: (ctx, event) => {
      if (event.poison && !existsSync(${JSON.stringify(marker)})) {
        writeFileSync(${JSON.stringify(marker)}, '');
        setTimeout(() => { throw new Error('poison event crashed the thread'); });
      }
      ctx.emit(event.n);
    },
  },
};
`;

interface Order {
  customer: string;
  ts: number;
  amount: number;
}

function orders(count: number, offset = 0): Order[] {
  const start = Date.UTC(2026, 10, 24, 12);
  return Array.from({ length: count }, (_, index) => {
    const id = index + offset;
    return { customer: `c-${(id * 7) % 53}`, ts: start + id * 10, amount: (id * 31) % 100 };
  });
}

/** The coordinator's side of the control protocol, recording everything the worker sends. */
class FakeCoordinator {
  readonly received: Message[] = [];
  private readonly subscription: Subscription;

  constructor(private readonly nc: NatsConnection) {
    this.subscription = nc.subscribe(subjects.workerToCoordinator, {
      callback: (_error, message) => {
        this.received.push(decodeMessage(message.data));
      },
    });
  }

  assign(task: TaskId, epoch: number): void {
    this.send({ type: 'task.assign', task, epoch, from: { kind: 'earliest' } });
  }

  revoke(task: TaskId, epoch: number): void {
    this.send({ type: 'task.revoke', task, epoch });
  }

  private send(message: Message): void {
    this.nc.publish(subjects.coordinatorToWorker(WORKER_ID), encodeMessage(message));
  }

  of<T extends Message['type']>(type: T): MessageOf<T>[] {
    return this.received.filter((message): message is MessageOf<T> => message.type === type);
  }

  /** Waits for a message of a type, received after `after` messages, that matches. */
  waitFor<T extends Message['type']>(
    type: T,
    matches: (message: MessageOf<T>) => boolean,
    timeoutMs = 30_000,
    after = 0,
  ): Promise<MessageOf<T>> {
    return pollUntil(
      () =>
        this.received
          .slice(after)
          .find((message): message is MessageOf<T> => message.type === type && matches(message as MessageOf<T>)),
      {
        what: `a matching ${type}`,
        timeoutMs,
        intervalMs: 50,
        context: () => `last heartbeat: ${JSON.stringify(this.of('worker.heartbeat').at(-1))}`,
      },
    );
  }

  close(): void {
    this.subscription.unsubscribe();
  }
}

const task = (partition: number, job = 'totals'): TaskId => ({ job, version: 'v1', partition });
const statusOf = (
  heartbeat: MessageOf<'worker.heartbeat'>,
  partition: number,
  job = 'totals',
): TaskStatus | undefined => heartbeat.tasks.find((status) => status.job === job && status.partition === partition);

const nats = useNatsServer();
let dir: string;
let coordinator: FakeCoordinator;
let worker: KappaProcess;
let httpPort: number;
const events = orders(2000);
const lastSequences: number[] = [];

async function readLastSequences(topic: string, partitions: number): Promise<number[]> {
  const jsm = await jetstreamManager(nats.nc);
  const result: number[] = [];
  for (let partition = 0; partition < partitions; partition++)
    result.push((await jsm.streams.info(streams.partition(topic, partition))).state.last_seq);
  return result;
}

async function produce(topic: string, batch: Array<{ key: string; time: number; value: unknown }>): Promise<void> {
  const producer = await Producer.forTopic(nats.nc, topic);
  for (const event of batch) if (!producer.publish(event)) await producer.ready();
  await producer.close();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-pool-'));
  writeFileSync(join(dir, 'totals.mjs'), TOTALS_JOB);
  writeFileSync(join(dir, 'crash.mjs'), crashJob(join(dir, 'crashed.marker')));
  await createTopic(nats.nc, { name: 'orders', partitions: PARTITIONS });
  await createTopic(nats.nc, { name: 'crashes', partitions: 1 });
  await produce(
    'orders',
    events.map((order) => ({ key: order.customer, time: order.ts, value: order })),
  );
  coordinator = new FakeCoordinator(nats.nc);
  worker = new KappaProcess([
    'worker',
    '--job',
    join(dir, 'totals.mjs'),
    '--job',
    join(dir, 'crash.mjs'),
    '--threads',
    '2',
    '--id',
    WORKER_ID,
    '--state-dir',
    join(dir, 'state'),
    '--http-port',
    '0',
    '--http-host',
    '127.0.0.1',
    '--nats',
    nats.url,
  ]);
  httpPort = Number((await worker.waitForLog(/"httpPort":(\d+)/))[1]);
});

afterAll(async () => {
  await worker?.kill();
  if (process.env.KAPPA_TEST_LOGS) writeFileSync(process.env.KAPPA_TEST_LOGS, worker.logs);
  coordinator?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('kappa worker (pool driven by a coordinator)', () => {
  it('registers with its thread count as capacity and the job versions it carries', async () => {
    const registration = await coordinator.waitFor('worker.register', (message) => message.workerId === WORKER_ID);
    expect(registration.capacity).toBe(2);
    expect(registration.carries).toEqual([
      {
        job: 'totals',
        version: 'v1',
        topic: 'orders',
        sink: 'kv',
        declaration: { sources: [{ name: 'orders', topic: 'orders', keying: { kind: 'function' } }] },
      },
      {
        job: 'crash',
        version: 'v1',
        topic: 'crashes',
        sink: 'kv',
        declaration: { sources: [{ name: 'crashes', topic: 'crashes', keying: { kind: 'function' } }] },
      },
    ]);
    expect(registration.httpUrl).toBe(`http://127.0.0.1:${httpPort}`);
  });

  it('runs 8 assigned tasks across both threads to the last sequence, and the serving table equals the batch computation', async () => {
    for (let partition = 0; partition < PARTITIONS; partition++) coordinator.assign(task(partition), 1);
    // Live events too, after the assignment.
    const live = orders(1000, events.length);
    events.push(...live);
    await produce(
      'orders',
      live.map((order) => ({ key: order.customer, time: order.ts, value: order })),
    );
    lastSequences.push(...(await readLastSequences('orders', PARTITIONS)));
    expect(lastSequences.reduce((sum, last) => sum + last, 0)).toBe(3000);

    await coordinator.waitFor('worker.heartbeat', (heartbeat) =>
      lastSequences.every((last, partition) => {
        const status = statusOf(heartbeat, partition);
        return status?.state === 'running' && status.sequence === last && status.epoch === 1;
      }),
    );
    const status = (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as {
      threads: Array<{ alive: boolean; tasks: number }>;
    };
    expect(status.threads.map((thread) => [thread.alive, thread.tasks])).toEqual([
      [true, 4],
      [true, 4],
    ]);
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).status).toBe(200);

    const module = (await import(pathToFileURL(join(dir, 'totals.mjs')).href)) as { default: unknown };
    const expected = await runBatch(
      validateJob(module.default),
      events.map((order) => ({ key: order.customer, time: order.ts, value: order })),
      { partitions: PARTITIONS, stateDir: join(dir, 'batch') },
    );
    const table = await new Kvm(nats.nc).open(buckets.servingTable('totals', 'v1'));
    const rows = new Map<string, unknown>();
    for await (const name of await table.keys()) {
      const row = liveRow(await table.get(name));
      if (row) rows.set(name, row.value);
    }
    const expectedRows = new Map(
      [...expected.table.values()].map((output) => [servingTableRowKey(output.key), output.value]),
    );
    expect(expectedRows.size).toBe(53);
    expect(rows).toEqual(expectedRows);
  });

  it('treats a repeated assign as a no-op and a higher epoch as a new epoch for the running task', async () => {
    coordinator.assign(task(0), 1);
    coordinator.assign(task(1), 2);
    const after = coordinator.received.length;
    const heartbeat = await coordinator.waitFor(
      'worker.heartbeat',
      (message) => statusOf(message, 1)?.epoch === 2,
      10_000,
      after,
    );
    // Still running where it was: not restarted from the start of the log.
    expect(statusOf(heartbeat, 0)).toMatchObject({ epoch: 1, state: 'running', sequence: lastSequences[0] });
    expect(statusOf(heartbeat, 1)).toMatchObject({ epoch: 2, state: 'running', sequence: lastSequences[1] });
  });

  it('shows kappa_events_processed_total per partition from both threads on the main /metrics', async () => {
    const processedLine = (partition: number) =>
      `kappa_events_processed_total{job="totals",version="v1",partition="${partition}"} ${lastSequences[partition]}`;
    // Threads post snapshots every second.
    const text = await pollUntil(async () => (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text(), {
      what: 'kappa_events_processed_total at the last sequence of every partition',
      until: (metrics) => lastSequences.every((_, partition) => metrics.includes(processedLine(partition))),
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    for (let partition = 0; partition < PARTITIONS; partition++) {
      expect(text).toContain(processedLine(partition));
    }
    expect(text).toContain('kappa_worker_threads 2');
    expect(text).toMatch(/^process_cpu_seconds_total /m);
  });

  it('stops a revoked task and answers task.released with its final sequence; stale and repeated revokes are answered idempotently', async () => {
    const after = coordinator.received.length;
    coordinator.revoke(task(7), 1);
    const released = await coordinator.waitFor(
      'task.released',
      (message) => message.task.partition === 7,
      10_000,
      after,
    );
    expect(released).toMatchObject({ workerId: WORKER_ID, task: task(7), epoch: 1, sequence: lastSequences[7] });
    const heartbeat = await coordinator.waitFor('worker.heartbeat', () => true, 5_000, coordinator.received.length);
    expect(statusOf(heartbeat, 7)).toBeUndefined();
    expect(heartbeat.tasks).toHaveLength(7);

    // A revoke for a task no longer held is answered anyway, with the same final sequence.
    const again = coordinator.received.length;
    coordinator.revoke(task(7), 1);
    expect(
      await coordinator.waitFor('task.released', (message) => message.task.partition === 7, 5_000, again),
    ).toMatchObject({ sequence: lastSequences[7] });
    // A revoke older than the running epoch (partition 1 runs under epoch 2) is ignored.
    coordinator.revoke(task(1), 1);
    const later = coordinator.received.length;
    const next = await coordinator.waitFor('worker.heartbeat', () => true, 5_000, later);
    await coordinator.waitFor('worker.heartbeat', () => true, 5_000, coordinator.received.indexOf(next) + 1);
    expect(
      coordinator.received
        .slice(later)
        .some((message) => message.type === 'task.released' && message.task.partition === 1),
    ).toBe(false);
  });

  it('reports a task that cannot run as failed with its error in the heartbeat', async () => {
    // The topic has 8 partitions: partition 8 has no stream, so every start fails.
    const after = coordinator.received.length;
    coordinator.assign(task(8), 1);
    const heartbeat = await coordinator.waitFor(
      'worker.heartbeat',
      (message) => statusOf(message, 8)?.state === 'failed',
      10_000,
      after,
    );
    expect(statusOf(heartbeat, 8)?.error).toMatch(/stream not found|KAPPA_orders_8/i);
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(503);
    await worker.waitForLog(/task failed/);
    // By now the restart back-off has grown past 1 s; a revoke ends it instead of waiting it out.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const revoked = coordinator.received.length;
    const revokedAtMs = Date.now();
    coordinator.revoke(task(8), 1);
    await coordinator.waitFor('task.released', (message) => message.task.partition === 8, 20_000, revoked);
    expect(Date.now() - revokedAtMs).toBeLessThan(1_000);
  });

  it('replaces a thread that dies and restarts its tasks', async () => {
    await produce('crashes', [
      { key: 'a', time: 1, value: { k: 'a', ts: 1, n: 1 } },
      { key: 'a', time: 2, value: { k: 'a', ts: 2, n: 2, poison: true } },
      { key: 'b', time: 3, value: { k: 'b', ts: 3, n: 3 } },
    ]);
    const after = coordinator.received.length;
    coordinator.assign(task(0, 'crash'), 1);
    await worker.waitForLog(/task host thread died/);
    const failed = await coordinator.waitFor(
      'worker.heartbeat',
      (message) => statusOf(message, 0, 'crash')?.state === 'failed',
      10_000,
      after,
    );
    expect(statusOf(failed, 0, 'crash')?.error).toMatch(/thread \d died/);
    // Every task, including those of the totals job on the same thread, runs again to its end.
    await coordinator.waitFor(
      'worker.heartbeat',
      (message) =>
        statusOf(message, 0, 'crash')?.sequence === 3 &&
        lastSequences
          .slice(0, 7)
          .every(
            (last, partition) =>
              statusOf(message, partition)?.state === 'running' && statusOf(message, partition)?.sequence === last,
          ),
      30_000,
      after,
    );
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    expect(text).toContain('kappa_worker_thread_restarts_total 1');
  });

  it('on SIGTERM releases every task with its final sequence, then sends worker.leave, and exits 0', async () => {
    const after = coordinator.received.length;
    expect(await worker.stop()).toBe(0);
    const sent = coordinator.received.slice(after);
    const released = sent.filter((message): message is MessageOf<'task.released'> => message.type === 'task.released');
    const byTask = new Map(released.map((message) => [`${message.task.job}/${message.task.partition}`, message]));
    expect([...byTask.keys()].sort()).toEqual(
      ['crash/0', ...[0, 1, 2, 3, 4, 5, 6].map((partition) => `totals/${partition}`)].sort(),
    );
    for (let partition = 0; partition < 7; partition++) {
      expect(byTask.get(`totals/${partition}`)).toMatchObject({
        sequence: lastSequences[partition],
        epoch: partition === 1 ? 2 : 1,
      });
    }
    const leaveIndex = sent.findIndex((message) => message.type === 'worker.leave');
    expect(leaveIndex).toBeGreaterThan(-1);
    expect(sent.slice(leaveIndex + 1).some((message) => message.type === 'task.released')).toBe(false);
    expect(sent.findLastIndex((message) => message.type === 'task.released')).toBeLessThan(leaveIndex);
  });
});
