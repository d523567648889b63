// The manifests' processes, run for real: a coordinator and a worker started with the arguments
// and environment of the dev overlay's containers (valueFrom resolved as the kubelet would),
// against a nats-server of the test's own. Their probe and metric paths answer, the values the
// manifest sets are the ones they use, every environment variable any manifest gives a Kappa
// container is one the process reads, the KEDA query's metric exists, and SIGTERM drains within
// the pod's terminationGracePeriodSeconds.
//
// Four values are replaced, each for a reason: NATS_URL (the cluster's Service name → the test's
// server), KAPPA_STATE_DIR (the pod's volume → a temp dir), KAPPA_JOB (/app/… in the image → the
// same file in the repo) and KAPPA_HTTP_PORT (→ a free port, because 9464/9465 may be taken on a
// shared machine; deploy-manifests.test.ts checks that the manifest's port, containerPort, probes
// and scrape annotations agree).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kappa, KappaProcess } from './harness/cli.js';
import {
  envNames,
  kappaContainers,
  kustomizations,
  podSpec,
  render,
  REPO,
  resolvedEnv,
  type Container,
  type K8sObject,
} from './harness/kustomize.js';
import { freePort } from './harness/nats-server.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const ENV_READS_PRELOAD = join(REPO, 'test/harness/env-reads.mjs');
const IMAGE_WORKDIR = '/app';

interface Started {
  process: KappaProcess;
  container: Container;
  workload: K8sObject;
  env: Record<string, string>;
  url: string;
  envReadsFile: string;
}

const nats = useNatsServer();
let dir: string;
let dev: K8sObject[];
const started: Record<'coordinator' | 'worker', Started | undefined> = { coordinator: undefined, worker: undefined };

async function startFromManifest(role: 'coordinator' | 'worker', podName: string): Promise<Started> {
  const found = kappaContainers(dev).find((candidate) => candidate.role === role)!;
  const env = resolvedEnv(found.container, dev, podName);
  const port = await freePort();
  const envReadsFile = join(dir, `${role}.env-reads`);
  const overrides: Record<string, string> = {
    NATS_URL: nats.url,
    KAPPA_HTTP_PORT: String(port),
    KAPPA_HTTP_HOST: '127.0.0.1',
    NODE_OPTIONS: `--import=${ENV_READS_PRELOAD}`,
    KAPPA_TEST_ENV_READS: envReadsFile,
  };
  if (env.KAPPA_STATE_DIR !== undefined) overrides.KAPPA_STATE_DIR = join(dir, `${role}-state`);
  if (env.KAPPA_JOB !== undefined)
    overrides.KAPPA_JOB = env.KAPPA_JOB.split(',')
      .map((file) => join(REPO, file.replace(`${IMAGE_WORKDIR}/`, '')))
      .join(',');
  // Only the manifest's variables (and the overrides): none of this test process's own leak in.
  const clean = Object.fromEntries(
    Object.keys(process.env)
      .filter((name) => /^(KAPPA_|NATS_)/.test(name))
      .map((name) => [name, undefined]),
  );
  const child = new KappaProcess(found.container.args!, { ...clean, ...env, ...overrides });
  return {
    process: child,
    container: found.container,
    workload: found.workload,
    env,
    url: `http://127.0.0.1:${port}`,
    envReadsFile,
  };
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

/** Polls until the check stops throwing (its last failure is the cause of the timeout error). */
function eventually<T>(what: string, check: () => Promise<T>, context?: () => string): Promise<T> {
  return pollUntil(check, { what, timeoutMs: 20_000, intervalMs: 100, until: () => true, context });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-deploy-'));
  dev = render('overlays/dev');
  started.coordinator = await startFromManifest('coordinator', 'kappa-coordinator-7d4b9c6f5-x2x9q');
  started.worker = await startFromManifest('worker', 'kappa-worker-0');
});

afterAll(async () => {
  await Promise.all([started.worker?.process.kill(), started.coordinator?.process.kill()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a coordinator and a worker run with the dev overlay's arguments and environment", () => {
  it.each(['coordinator', 'worker'] as const)(
    'the %s answers its liveness and readiness probes and serves Prometheus metrics at the scrape path',
    async (role) => {
      const { container, workload, url, process: child } = started[role]!;
      const annotations = workload.spec.template.metadata.annotations;
      const logs = () => `logs:\n${child.logs.slice(-2000)}`;
      await eventually(
        `the ${role}'s liveness probe answering 200`,
        async () => expect((await get(`${url}${container.livenessProbe.httpGet.path}`)).status).toBe(200),
        logs,
      );
      await eventually(`the ${role}'s readiness probe answering 200`, async () =>
        expect((await get(`${url}${container.readinessProbe.httpGet.path}`)).status).toBe(200),
      );
      const metrics = await get(`${url}${annotations['prometheus.io/path']}`);
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/^# HELP kappa_/m);
      // Not every path answers: a path the process does not serve is a 404.
      expect((await get(`${url}/no-such-path`)).status).toBe(404);
    },
  );

  it('uses the ids, thread count and job module the manifest gives: the leader lists the worker with its capacity and job', async () => {
    const coordinator = started.coordinator!;
    const worker = started.worker!;
    const status = await eventually('the leader listing one worker', async () => {
      const reply = await get(`${coordinator.url}/v1/status`);
      expect(reply.status).toBe(200);
      const body = JSON.parse(reply.body) as {
        leader: { coordinatorId: string };
        workers: { workerId: string; capacity: number; carries: { job: string; version: string }[] }[];
      };
      expect(body.workers).toHaveLength(1);
      return body;
    });
    expect(status.leader.coordinatorId).toBe(coordinator.env.KAPPA_COORDINATOR_ID);
    expect(status.workers[0]).toMatchObject({
      workerId: worker.env.KAPPA_WORKER_ID,
      capacity: Number(worker.env.KAPPA_THREADS),
      carries: [expect.objectContaining({ job: 'clicks', version: 'v1' })],
    });
    expect(worker.env.KAPPA_WORKER_ID).toBe('kappa-worker-0');
  });

  it('exports the metric the KEDA ScaledObject scales on, with the labels its query selects, once a job version runs', async () => {
    const worker = started.worker!;
    const flags = ['--nats', nats.url];
    expect((await kappa(['topic', 'create', 'clicks', '--partitions', '4', '--replicas', '1', ...flags])).code).toBe(0);
    expect((await kappa(['start', 'clicks', '--version', 'v1', '--from', 'earliest', ...flags])).code).toBe(0);
    const scaledObjects = kustomizations()
      .filter((kustomization) => kustomization.startsWith('overlays/'))
      .flatMap((kustomization) => render(kustomization).filter((object) => object.kind === 'ScaledObject'));
    expect(scaledObjects.length).toBeGreaterThan(0);
    for (const scaledObject of scaledObjects) {
      for (const trigger of scaledObject.spec.triggers) {
        expect(trigger.type).toBe('prometheus');
        const [, metric, selector] = /\b(kappa_[a-z_]+)\{([^}]*)\}/.exec(trigger.metadata.query as string)!;
        // Prometheus adds `namespace` (a target label); the rest are the process's own (honorLabels keeps `job`).
        const processLabels = [...selector!.matchAll(/(\w+)=/g)]
          .map((match) => match[1]!)
          .filter((name) => name !== 'namespace');
        expect(processLabels).toEqual(expect.arrayContaining(['job', 'version']));
        await eventually(`${metric} for clicks v1 on a /metrics`, async () => {
          const series: string[] = [];
          for (const role of ['coordinator', 'worker'] as const) {
            const body = (await get(`${started[role]!.url}/metrics`)).body;
            series.push(
              ...body
                .split('\n')
                .filter(
                  (line) =>
                    line.startsWith(`${metric}{`) && line.includes('job="clicks"') && line.includes('version="v1"'),
                ),
            );
          }
          expect(
            series.length,
            `${metric} for clicks v1 on the coordinator's or the worker's /metrics`,
          ).toBeGreaterThan(0);
          for (const line of series) for (const name of processLabels) expect(line, name).toContain(`${name}="`);
        });
      }
    }
    // Every task running: the worker is still ready.
    await eventually('the worker ready', async () => expect((await get(`${worker.url}/readyz`)).status).toBe(200));
  });

  it('reads every environment variable that any manifest gives a Kappa container of its kind', async () => {
    for (const role of ['coordinator', 'worker'] as const) {
      const reads = new Set(readFileSync(started[role]!.envReadsFile, 'utf8').split('\n'));
      for (const kustomization of kustomizations()) {
        const objects = render(kustomization);
        for (const { container, workload } of kappaContainers(objects).filter((found) => found.role === role)) {
          // Worker sets take kappa-config from the platform they are deployed with.
          const names = envNames(container, objects);
          if (
            container.envFrom?.some(
              (source: { configMapRef: { name: string } }) =>
                !objects.some(
                  (object) => object.kind === 'ConfigMap' && object.metadata.name === source.configMapRef.name,
                ),
            )
          ) {
            names.push(
              ...Object.keys(
                dev.find((object) => object.kind === 'ConfigMap' && object.metadata.name === 'kappa-config')!.data,
              ),
            );
          }
          for (const name of names)
            expect(
              reads.has(name),
              `${kustomization} ${workload.metadata.name}: ${name} is never read by kappa ${role}`,
            ).toBe(true);
        }
      }
    }
  });

  it.each(['worker', 'coordinator'] as const)(
    "the %s drains on SIGTERM and exits 0 within the pod's terminationGracePeriodSeconds",
    async (role) => {
      const { process: child, workload } = started[role]!;
      const graceMs = podSpec(workload).terminationGracePeriodSeconds * 1000;
      const begin = Date.now();
      const code = await child.stop();
      expect(code, child.logs.slice(-2000)).toBe(0);
      expect(Date.now() - begin).toBeLessThan(graceMs);
      if (role === 'worker') expect(child.logs).toMatch(/stopping: releasing every task/);
    },
  );
});
