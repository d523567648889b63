// Observability checked the way an operator sees it: a real Prometheus scrapes a running
// cluster (one `kappa coordinator`, two `kappa worker` piscina pools) over a 4-partition topic,
// and its HTTP API must show events processed increasing, consumer lag per task and the job
// version's replay progress reaching 1. The Grafana dashboard must query only metrics the
// processes export, with expressions Prometheus accepts. Probes and JSON logs are checked on the
// same processes.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Producer } from '../client/producer.js';
import { createTopic } from '../client/topics.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { leaderStatus } from './harness/cluster-status.js';
import { freePort } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';
import { PrometheusServer } from './harness/prometheus.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 4;
const JOB = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');
const DASHBOARD = resolve(import.meta.dirname, '../deploy/grafana/kappa-dashboard.json');
const VERSION = '{job="clicks",version="v1"}';

const nats = useNatsServer();
let prometheus: PrometheusServer | undefined;
const processes: KappaProcess[] = [];
/** HTTP ports: [coordinator, worker w1, worker w2]. */
const ports: number[] = [];
let produced = 0;

async function produce(count: number): Promise<void> {
  const producer = await Producer.forTopic(nats.nc, 'clicks');
  const start = Date.UTC(2026, 0, 1) + produced * 100;
  for (let index = 0; index < count; index++) {
    const user = `user-${(produced + index) % 17}`;
    const ts = start + index * 100;
    if (!producer.publish({ key: user, time: ts, value: { user, ts, page: '/a' } })) await producer.ready();
  }
  await producer.flush();
  produced += count;
}

/** The value of a query that returns exactly one series, or undefined. */
async function single(expression: string): Promise<number | undefined> {
  const samples = await prometheus!.query(expression);
  return samples.length === 1 ? samples[0]!.value : undefined;
}

beforeAll(async () => {
  await createTopic(nats.nc, { name: 'clicks', partitions: PARTITIONS, key: 'user' });
  await produce(4_000);
  for (let index = 0; index < 3; index++) ports.push(await freePort());
  processes.push(
    new KappaProcess([
      'coordinator',
      '--id',
      'c1',
      '--nats',
      nats.url,
      '--http-port',
      String(ports[0]),
      '--http-host',
      '127.0.0.1',
      '--log-level',
      'warn',
    ]),
  );
  for (const [index, id] of ['w1', 'w2'].entries()) {
    processes.push(
      new KappaProcess(
        [
          'worker',
          '--job',
          JOB,
          '--id',
          id,
          '--threads',
          '1',
          '--nats',
          nats.url,
          '--http-port',
          String(ports[index + 1]),
          '--http-host',
          '127.0.0.1',
        ],
        {
          KAPPA_STATE_DIR: join(nats.server.dir, `state-${id}`),
          KAPPA_LOG_LEVEL: 'info',
        },
      ),
    );
  }
  prometheus = await PrometheusServer.start(ports.map((port) => `127.0.0.1:${port}`));
  await waitFor('2 workers registered with a leader', async () =>
    (await leaderStatus(nats.nc)).workers.length === 2 ? true : undefined,
  );
  const started = await kappa(['start', 'clicks', '--version', 'v1', '--nats', nats.url]);
  expect(started.code, started.stderr + started.stdout).toBe(0);
});

afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  await prometheus?.stop();
});

/** Polls until `probe` returns a value; a timeout shows the processes' last logs. */
function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  return pollUntil(probe, {
    what,
    timeoutMs,
    context: () =>
      `${processes.map((process) => process.logs.slice(-1500)).join('\n---\n')}\n--- prometheus\n${prometheus?.output.slice(-1500) ?? ''}`,
  });
}

it('a real Prometheus scraping a coordinator and two workers sees replay progress reach 1, events processed increase and consumer lag per task', async () => {
  await waitFor('all three processes scraped', async () =>
    (await prometheus!.query('up == 1')).length === 3 ? true : undefined,
  );

  // Replay of the 4,000 events already in the topic: the coordinator's progress for v1 reaches 1.
  await waitFor('replay progress of clicks v1 reaching 1', async () =>
    (await single(`kappa_version_progress_ratio${VERSION}`)) === 1 ? true : undefined,
  );
  expect(await single(`kappa_version_lag_messages${VERSION}`)).toBe(0);
  const before = await waitFor('events processed to count the replayed events', async () => {
    const value = await single(`sum(kappa_events_processed_total${VERSION})`);
    return value === produced ? value : undefined;
  });

  // New events: the counter Prometheus stores increases, across both workers' threads.
  await produce(2_000);
  const after = await waitFor('events processed to count the new events', async () => {
    const value = await single(`sum(kappa_events_processed_total${VERSION})`);
    return value === produced ? value : undefined;
  });
  expect(after).toBeGreaterThan(before);
  expect(await single(`sum(rate(kappa_events_processed_total${VERSION}[1m])) > 0`)).toBeGreaterThan(0);

  // Consumer lag: one series per task (partition), reported by the worker holding it; both workers hold some.
  const lag = await prometheus!.query(`kappa_consumer_lag_messages${VERSION}`);
  expect(lag.map((sample) => sample.metric.partition).sort()).toEqual(['0', '1', '2', '3']);
  expect(new Set(lag.map((sample) => sample.metric.instance)).size).toBe(2);
  expect(lag.every((sample) => sample.value >= 0)).toBe(true);

  // The leader's view of the cluster.
  expect(await single('kappa_coordinator_leader')).toBe(1);
  expect(await single(`kappa_version_tasks{job="clicks",version="v1",state="running"}`)).toBe(PARTITIONS);
  expect((await prometheus!.query('kappa_tasks_assigned')).map((sample) => sample.value).sort()).toEqual([2, 2]);
  await waitFor('progress back at 1 after the new events', async () =>
    (await single(`kappa_version_progress_ratio${VERSION}`)) === 1 ? true : undefined,
  );
});

it('the Grafana dashboard parses, queries only metrics a coordinator or worker exports, and every expression is valid PromQL', async () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    panels: Panel[];
    templating: { list: Array<{ query?: unknown }> };
  };
  const expressions = dashboard.panels.flatMap(function targets(panel: Panel): string[] {
    return [...(panel.targets ?? []).map((target) => target.expr), ...(panel.panels ?? []).flatMap(targets)];
  });
  const variableQueries = dashboard.templating.list.flatMap((variable) =>
    typeof variable.query === 'object' && variable.query !== null ? [(variable.query as { query: string }).query] : [],
  );
  expect(expressions.length).toBeGreaterThan(20);

  // Metric families (and their types) the processes expose, from the text format's TYPE lines.
  const exported = new Map<string, string>();
  for (const port of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) exported.set(name!, type!);
  }
  const queried = new Set(
    [...expressions, ...variableQueries].flatMap((expression) => expression.match(/kappa_[a-z_]+/g) ?? []),
  );
  const missing = [...queried].filter((name) => {
    const family = name.replace(/_(bucket|sum|count)$/, '');
    if (family !== name && ['histogram', 'summary'].includes(exported.get(family) ?? '')) return false;
    return !exported.has(name);
  });
  expect(missing).toEqual([]);
  for (const family of [
    'kappa_events_processed_total',
    'kappa_version_progress_ratio',
    'kappa_consumer_lag_messages',
    'kappa_checkpoint_duration_seconds',
  ]) {
    expect(queried.has(family) || queried.has(`${family}_bucket`)).toBe(true);
  }

  // Every expression, with Grafana's variables filled in, is accepted by Prometheus.
  for (const expression of expressions) {
    const promql = expression
      .replaceAll('$__rate_interval', '10s')
      .replaceAll('$job', '.*')
      .replaceAll('$version', '.*');
    await expect(prometheus!.query(promql), promql).resolves.toBeInstanceOf(Array);
  }
  expect(
    await prometheus!.query(
      `sum by (job, version) (rate(kappa_events_processed_total{job=~".*", version=~".*"}[10s]))`,
    ),
  ).toHaveLength(1);
});

it('answers the probes: live and ready once the tasks consume; worker logs are JSON lines with job, version, partition and worker', async () => {
  for (const port of ports) {
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status, await health.text()).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
  }
  for (const worker of processes.slice(1)) {
    const started = worker.logs
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === 'task started');
    expect(started).toHaveLength(2);
    for (const line of started) {
      expect(line).toMatchObject({
        job: 'clicks',
        version: 'v1',
        workerId: expect.stringMatching(/^w[12]$/),
        level: 30,
      });
      expect(line.partition).toBeTypeOf('number');
    }
  }
});

interface Panel {
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}
