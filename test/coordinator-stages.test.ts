// The leader plans, assigns and retires the stages of a job version (coordinator/topic-resolution.ts,
// cluster-state.ts, version-progress.ts, reprocessing.ts). A coordinator runs in this process
// against a real nats-server; the workers are fakes in this file that speak the control protocol
// over NATS (register with the job's declaration, heartbeat what they hold with the sequences the
// test sets, release on revoke). The expected plans, task sets and lags are written out or
// counted here, from what the test published, not taken from the coordinator.
import { jetstreamManager, jetstream } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopic, getTopic, listTopics, topicExists } from '../client/index.js';
import { assignTasks } from '../coordinator/assignment.js';
import { desiredTasks, type JobVersionRecord } from '../coordinator/cluster-state.js';
import { Coordinator } from '../coordinator/coordinator.js';
import { CoordinatorMetrics } from '../coordinator/metrics.js';
import {
  decodeMessage,
  encodeMessage,
  streams,
  subjects,
  systemClock,
  taskKey,
  type CarriedVersion,
  type JobDeclaration,
  type JobPlan,
  type Message,
  type MessageOf,
  type TaskId,
  type TaskStatus,
} from '../protocol/index.js';
import { kappa } from './harness/cli.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const JOB = 'per-user';
const REPARTITION_TOPIC = 'rp_8_per-user_v1';
const REPARTITION_MAX_AGE_MS = 3_600_000;
/** Counts clicks per user over `clicks`, which producers key by page: a field the topic does not record. */
const DECLARATION: JobDeclaration = {
  sources: [{ name: 'clicks', topic: 'clicks', keying: { kind: 'field', field: 'user' } }],
  partitions: 3,
};
const PLAN: JobPlan = {
  sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }],
  repartition: { topic: REPARTITION_TOPIC, partitions: 3 },
};
const ROUTE_TASKS = [0, 1, 2, 3].map((partition) => `${JOB}/v1/route-clicks/${partition}`);
const KEYED_TASKS = [0, 1, 2].map((partition) => `${JOB}/v1/${partition}`);

/** A worker as the coordinator sees it over NATS: what it holds is the truth the test checks. */
class FakeWorker {
  readonly held = new Map<string, { task: TaskId; epoch: number }>();
  readonly assigns: Array<MessageOf<'task.assign'>> = [];
  /** Task key → the sequence its heartbeat reports (0 when unset). */
  readonly sequences = new Map<string, number>();
  private nc: NatsConnection | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    private readonly carries: CarriedVersion[],
  ) {}

  async start(url: string): Promise<void> {
    const nc = await connect({ servers: url });
    this.nc = nc;
    nc.subscribe(subjects.coordinatorToWorker(this.id), {
      callback: (_error, msg) => {
        const message = decodeMessage(msg.data);
        if (message.type === 'task.assign') {
          this.assigns.push(message);
          this.held.set(taskKey(message.task), { task: message.task, epoch: message.epoch });
        } else if (message.type === 'task.revoke') {
          const key = taskKey(message.task);
          const current = this.held.get(key);
          if (current === undefined || current.epoch > message.epoch) return;
          this.held.delete(key);
          const released: Message = {
            type: 'task.released',
            workerId: this.id,
            task: message.task,
            epoch: current.epoch,
            sequence: 0,
          };
          nc.publish(subjects.workerToCoordinator, encodeMessage(released));
        }
      },
    });
    nc.publish(
      subjects.workerToCoordinator,
      encodeMessage({ type: 'worker.register', workerId: this.id, capacity: 8, carries: this.carries }),
    );
    this.timer = setInterval(() => this.heartbeat(), 200);
  }

  heldKeys(job: string): string[] {
    return [...this.held.values()]
      .filter(({ task }) => task.job === job)
      .map(({ task }) => taskKey(task))
      .sort();
  }

  private heartbeat(): void {
    const tasks: TaskStatus[] = [...this.held.values()].map(({ task, epoch }) => ({
      ...task,
      epoch,
      state: 'running',
      sequence: this.sequences.get(taskKey(task)) ?? 0,
      lagMessages: 0,
      watermark: null,
    }));
    const heartbeat: Message = { type: 'worker.heartbeat', workerId: this.id, tasks };
    this.nc?.publish(subjects.workerToCoordinator, encodeMessage(heartbeat));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.nc?.close();
  }
}

const nats = useNatsServer();
let coordinatorNc: NatsConnection;
let coordinator: Coordinator;
const metrics = new CoordinatorMetrics();
const worker = new FakeWorker('w1', [
  { job: JOB, version: 'v1', topic: 'clicks', sink: 'kv', declaration: DECLARATION },
  // A worker from before declarations says only which topic its job reads.
  { job: 'legacy', version: 'v1', topic: 'clicks', sink: 'kv' },
]);

async function admin(verb: string, request: Message): Promise<Message> {
  const reply = await nats.nc.request(subjects.adminRequest(verb), encodeMessage(request), { timeout: 10_000 });
  return decodeMessage(reply.data);
}

function versionView(job: string) {
  return coordinator.status()?.versions.find((version) => version.job === job && version.version === 'v1');
}

/** Publishes `count` opaque messages to a partition stream: the coordinator reads only its last sequence. */
async function fill(topic: string, partition: number, count: number): Promise<void> {
  const js = jetstream(nats.nc);
  for (let index = 0; index < count; index++) await js.publish(subjects.partition(topic, partition), `m${index}`);
}

beforeAll(async () => {
  await createTopic(nats.nc, { name: 'clicks', partitions: 4, key: 'page' });
  coordinatorNc = await connect({ servers: nats.url });
  coordinator = await Coordinator.start({
    nc: coordinatorNc,
    coordinatorId: 'c1',
    sessionTimeoutMs: 10_000,
    leaseTtlMs: 2_000,
    tickMs: 100,
    resendAfterMs: 500,
    repartitionMaxAgeMs: REPARTITION_MAX_AGE_MS,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    metrics,
  });
  await pollUntil(() => coordinator.status(), { what: 'the coordinator to lead', timeoutMs: 20_000 });
  await worker.start(nats.url);
  await pollUntil(() => (coordinator.status()?.workers.length === 1 ? true : undefined), {
    what: 'the fake worker registered',
    timeoutMs: 10_000,
  });
}, 40_000);

afterAll(async () => {
  await worker.stop();
  await coordinator?.stop();
  await coordinatorNc?.close();
});

describe('a version keyed by another field than its topic’s', () => {
  it('is assigned a route task per source partition and a keyed task per repartition partition, each with the plan', async () => {
    const reply = await admin('start', { type: 'job.start', job: JOB, version: 'v1', from: { kind: 'earliest' } });
    expect(reply).toMatchObject({ type: 'reply.ok', detail: { topic: 'clicks', partitions: 3 } });
    await pollUntil(() => (worker.heldKeys(JOB).length === 7 ? true : undefined), {
      what: 'the 7 tasks of both stages assigned',
      timeoutMs: 15_000,
    });
    expect(worker.heldKeys(JOB)).toEqual([...ROUTE_TASKS, ...KEYED_TASKS].sort());
    const assigns = worker.assigns.filter((assign) => assign.task.job === JOB);
    expect(assigns.length).toBeGreaterThanOrEqual(7);
    for (const assign of assigns) expect(assign.plan).toEqual(PLAN);

    // The topic existed before the first assign named it: its partitions, age limit, internal mark.
    expect(await getTopic(nats.nc, REPARTITION_TOPIC)).toMatchObject({ partitions: 3, replicas: 1 });
    const jsm = await jetstreamManager(nats.nc);
    for (let partition = 0; partition < 3; partition++) {
      const { config } = await jsm.streams.info(streams.partition(REPARTITION_TOPIC, partition));
      expect(config.max_age).toBe(nanos(REPARTITION_MAX_AGE_MS));
      expect(config.subjects).toEqual([subjects.partition(REPARTITION_TOPIC, partition)]);
    }
    expect(await jsm.streams.info(streams.partition(REPARTITION_TOPIC, 3)).catch(() => 'missing')).toBe('missing');
    const listed = await listTopics(nats.nc);
    expect(listed.find((topic) => topic.name === REPARTITION_TOPIC)).toMatchObject({ internal: true });
    expect(listed.find((topic) => topic.name === 'clicks')).toMatchObject({ internal: false, key: 'page' });
  });

  it('reports the lag of each stage against its own topic, and cuts over only when every stage has caught up', async () => {
    // Source partition p holds p + 1 messages (10 in all); repartition partition q holds 2 (q + 1) (12 in all).
    for (let partition = 0; partition < 4; partition++) await fill('clicks', partition, partition + 1);
    for (let partition = 0; partition < 3; partition++) await fill(REPARTITION_TOPIC, partition, 2 * (partition + 1));
    // The route tasks have read everything, the keyed tasks 1 message of each partition.
    for (let partition = 0; partition < 4; partition++)
      worker.sequences.set(`${JOB}/v1/route-clicks/${partition}`, partition + 1);
    for (let partition = 0; partition < 3; partition++) worker.sequences.set(`${JOB}/v1/${partition}`, 1);
    const keyedLag = 12 - 3;

    const behind = await pollUntil(() => versionView(JOB), {
      what: 'the keyed stage 9 behind',
      until: (view) => view?.lagMessages === keyedLag,
      timeoutMs: 15_000,
    });
    expect(behind!.stages).toEqual([
      { stage: 'route-clicks', topic: 'clicks', partitions: 4, lagMessages: 0 },
      { topic: REPARTITION_TOPIC, partitions: 3, lagMessages: keyedLag },
    ]);
    expect(behind!.progress).toBeCloseTo((10 + 3) / (10 + 12));
    expect(await metrics.registry.getSingleMetricAsString('kappa_stage_lag_messages')).toContain(
      `kappa_stage_lag_messages{job="${JOB}",version="v1",stage="keyed"} ${keyedLag}`,
    );

    // `kappa status` shows a line per stage with its lag.
    const shown = await kappa(['status', '--job', JOB, '--nats', nats.url]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^${JOB}\\s+v1\\s+route-clicks\\s+clicks\\s+4\\s+0$`, 'm'));
    expect(shown.stdout).toMatch(
      new RegExp(`^${JOB}\\s+v1\\s+keyed\\s+${REPARTITION_TOPIC}\\s+3\\s+${keyedLag}$`, 'm'),
    );
    expect(shown.stdout).toMatch(new RegExp(`^${JOB}/v1/route-clicks/0\\s+w1\\s`, 'm'));

    const refused = await admin('cutover', { type: 'job.cutover', job: JOB, version: 'v1', maxLagMessages: 0 });
    expect(refused).toMatchObject({ type: 'reply.error', code: 'ADMIN_REJECTED' });
    expect((refused as MessageOf<'reply.error'>).message).toContain(
      `is ${keyedLag} messages behind (route-clicks 0, keyed ${keyedLag})`,
    );

    for (let partition = 0; partition < 3; partition++)
      worker.sequences.set(`${JOB}/v1/${partition}`, 2 * (partition + 1));
    await pollUntil(() => versionView(JOB), {
      what: 'every stage caught up',
      until: (view) => view?.lagMessages === 0 && view.progress === 1,
      timeoutMs: 15_000,
    });
    // Past the lag check: only the table the fake worker never wrote stops it now.
    const caughtUp = await admin('cutover', { type: 'job.cutover', job: JOB, version: 'v1', maxLagMessages: 0 });
    expect((caughtUp as MessageOf<'reply.error'>).message).toMatch(/has no serving table yet/);
  });

  it('keeps its repartition topic through a stop and a start, and deletes it when retired', async () => {
    const stopped = await admin('stop', { type: 'job.stop', job: JOB, version: 'v1' });
    expect(stopped).toMatchObject({ type: 'reply.ok' });
    await pollUntil(() => (versionView(JOB) === undefined ? true : undefined), {
      what: 'the version stopped (every task released)',
      timeoutMs: 15_000,
    });
    expect(worker.heldKeys(JOB)).toEqual([]);
    expect(await topicExists(nats.nc, REPARTITION_TOPIC)).toBe(true);

    // Started again: the same two stages, the same plan, the same topic (its routed events kept).
    const assignsBefore = worker.assigns.length;
    const started = await kappa(['start', JOB, '--version', 'v1', '--nats', nats.url]);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toContain(
      `${JOB} v1: running on topic clicks, repartitioned through ${REPARTITION_TOPIC} (3 partitions)`,
    );
    await pollUntil(() => (worker.heldKeys(JOB).length === 7 ? true : undefined), {
      what: 'both stages assigned again',
      timeoutMs: 15_000,
    });
    for (const assign of worker.assigns.slice(assignsBefore)) expect(assign.plan).toEqual(PLAN);
    const jsm = await jetstreamManager(nats.nc);
    expect((await jsm.streams.info(streams.partition(REPARTITION_TOPIC, 2))).state.last_seq).toBe(6);

    const retired = await admin('retire', { type: 'job.retire', job: JOB, version: 'v1', graceMs: 0 });
    expect(retired).toMatchObject({ type: 'reply.ok' });
    await pollUntil(async () => ((await topicExists(nats.nc, REPARTITION_TOPIC)) ? undefined : true), {
      what: 'the repartition topic deleted',
      timeoutMs: 15_000,
    });
    for (let partition = 0; partition < 3; partition++) {
      await expect(jsm.streams.info(streams.partition(REPARTITION_TOPIC, partition))).rejects.toThrow(/not found/);
    }
    // Its source topic is the user's: untouched.
    expect(await getTopic(nats.nc, 'clicks')).toMatchObject({ partitions: 4, key: 'page' });
  });
});

it('reads the one topic directly for a worker that declares nothing (from before plans)', async () => {
  await admin('start', { type: 'job.start', job: 'legacy', version: 'v1', from: { kind: 'earliest' } });
  await pollUntil(() => (worker.heldKeys('legacy').length === 4 ? true : undefined), {
    what: 'the 4 tasks of the legacy job',
    timeoutMs: 15_000,
  });
  expect(worker.heldKeys('legacy')).toEqual([0, 1, 2, 3].map((partition) => `legacy/v1/${partition}`));
  const direct = { sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }], repartition: null };
  for (const assign of worker.assigns.filter((each) => each.task.job === 'legacy')) expect(assign.plan).toEqual(direct);
  expect(await topicExists(nats.nc, 'rp_6_legacy_v1')).toBe(false);
});

describe('desired tasks and their balance (pure)', () => {
  const version: JobVersionRecord = {
    job: 'j',
    version: 'v1',
    topic: 'clicks',
    partitions: 4,
    from: { kind: 'earliest' },
    state: 'running',
    startedAtMs: 0,
    plan: {
      sources: [{ name: 'clicks', topic: 'clicks', partitions: 4 }],
      repartition: { topic: 'rp_1_j_v1', partitions: 4 },
    },
  };

  it('wants a task per partition of every stage while running, none before the plan or once stopping', () => {
    const tasks = desiredTasks(new Map([['j/v1', version]])).map(taskKey);
    expect(tasks).toEqual([
      'j/v1/route-clicks/0',
      'j/v1/route-clicks/1',
      'j/v1/route-clicks/2',
      'j/v1/route-clicks/3',
      'j/v1/0',
      'j/v1/1',
      'j/v1/2',
      'j/v1/3',
    ]);
    const { plan: _plan, ...unplanned } = version;
    expect(desiredTasks(new Map([['j/v1', unplanned]]))).toEqual([]);
    expect(desiredTasks(new Map([['j/v1', { ...version, state: 'stopping' as const }]]))).toEqual([]);
  });

  it('spreads each stage over the carriers, so no worker holds all the route tasks', () => {
    const carries = new Set(['j/v1']);
    const { owners } = assignTasks({
      tasks: desiredTasks(new Map([['j/v1', version]])),
      workers: [
        { id: 'a', capacity: 1, carries },
        { id: 'b', capacity: 1, carries },
      ],
      previous: new Map(),
    });
    for (const worker of ['a', 'b']) {
      const held = [...owners].filter(([, owner]) => owner === worker).map(([task]) => task);
      expect(held.filter((task) => task.includes('/route-clicks/'))).toHaveLength(2);
      expect(held.filter((task) => !task.includes('/route-clicks/'))).toHaveLength(2);
    }
  });
});
