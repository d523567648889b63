// The Kubernetes manifests (deploy/k8s) and the Dockerfile, checked offline: every kustomization
// renders with kubectl's kustomize; every rendered object validates against the Kubernetes,
// prometheus-operator and KEDA schemas (kubernetes-models' generated validators) and has no field
// those schemas do not define (TypeScript's excess-property check against the same models); the
// NATS configs pass `nats-server -t`; and the ports, probe and metric paths, flags, state dir and
// job modules in the manifests agree with the processes' real options and the image.
// deploy-processes.test.ts then runs the processes with the manifests' arguments and environment.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { Command } from 'commander';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerCommands } from '../cli/commands/index.js';
import { coordinatorConfig } from '../cli/commands/coordinator.js';
import { workerConfig } from '../cli/commands/worker.js';
import { nkeys } from '@nats-io/transport-node';
import { authorizationBlock, ROLES, type Role } from '../cli/nats-roles.js';
import { NATS_SERVER_BINARY } from './harness/nats-server.js';
import { makeTestCertificates } from './harness/certificates.js';
import {
  configMap,
  envEntry,
  envNames,
  kappaContainers,
  kubectlVersion,
  kustomizations,
  podSpec,
  render,
  REPO,
  WORKLOAD_KINDS,
  type Container,
  type K8sObject,
} from './harness/kustomize.js';

/** What runs together in a cluster: the dev overlay alone; prod's platform plus its worker sets. */
const DEPLOYMENTS: Record<string, string[]> = {
  dev: ['overlays/dev'],
  prod: ['overlays/prod', 'overlays/prod-workers-v1', 'overlays/prod-workers-v2'],
};

/** The schema models' packages by API group (kubernetes-models for Kubernetes' own). */
const MODEL_PACKAGES: Record<string, string> = {
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
  'keda.sh': '@kubernetes-models/keda',
};

function modelModule(apiVersion: string, kind: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  return `${MODEL_PACKAGES[group!] ?? 'kubernetes-models'}/${group ? `${group}/` : ''}${version}/${kind}`;
}

/** Validates with the model's generated JSON-schema validator; returns the error or undefined. */
async function schemaError(object: K8sObject): Promise<string | undefined> {
  const module = (await import(modelModule(object.apiVersion, object.kind)).catch(() => undefined)) as
    Record<string, new (data: unknown) => { validate(): void }> | undefined;
  const Model = module?.[object.kind];
  if (!Model)
    return `no schema for ${object.apiVersion} ${object.kind} (${modelModule(object.apiVersion, object.kind)})`;
  try {
    new Model(object).validate();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * The schema validators allow fields they do not define (additionalProperties is open), so a typo
 * such as `livenesProbe` would pass them and be dropped by the API server. TypeScript's
 * excess-property check against the same models' interfaces rejects any undefined field at any
 * depth: one in-memory program, each object a typed object literal.
 */
function unknownFieldErrors(objects: { label: string; object: K8sObject }[]): string[] {
  const file = join(REPO, 'test/__rendered-manifests__.ts');
  const lines: string[] = [];
  const labelAtLine: string[] = [];
  objects.forEach(({ label, object }, index) => {
    lines.push(`import type { I${object.kind} as T${index} } from '${modelModule(object.apiVersion, object.kind)}';`);
    labelAtLine[lines.length] = label;
    lines.push(`export const object${index}: T${index} = ${JSON.stringify(object)};`);
  });
  const text = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, text, language) : getSourceFile.call(host, name, language, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? text : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const line =
      diagnostic.file && diagnostic.start !== undefined
        ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line
        : -1;
    return `${labelAtLine[line] ?? diagnostic.file?.fileName ?? '?'}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')}`;
  });
}

function label(dir: string, object: K8sObject): string {
  return `${dir}: ${object.kind}/${object.metadata.name}`;
}

/** The `kappa` program the image runs, to read its subcommands' options. */
async function kappaProgram(): Promise<Command> {
  const program = new Command('kappa').enablePositionalOptions();
  await registerCommands(program, []);
  return program;
}

/** Each selector's match labels ⊆ labels. */
function selects(
  selector: {
    matchLabels?: Record<string, string>;
    matchExpressions?: { key: string; operator: string; values?: string[] }[];
  },
  labels: Record<string, string>,
): boolean {
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels[key] === value);
  const byExpressions = (selector.matchExpressions ?? []).every((expression) => {
    if (expression.operator === 'In') return expression.values!.includes(labels[expression.key]!);
    if (expression.operator === 'Exists') return expression.key in labels;
    throw new Error(`selector operator ${expression.operator} not handled by the test`);
  });
  return byLabels && byExpressions;
}

function httpPortOf(container: Container, role: string): number {
  const fromEnv = envEntry(container, 'KAPPA_HTTP_PORT')?.value;
  const flagAt = container.args?.indexOf('--http-port') ?? -1;
  if (flagAt >= 0) return Number(container.args![flagAt + 1]);
  if (fromEnv !== undefined) return Number(fromEnv);
  return role === 'worker' ? workerConfig.parse({ job: 'x' }).httpPort : coordinatorConfig.parse({}).httpPort;
}

function containerPort(container: Container, port: string | number): number | undefined {
  if (typeof port === 'number') return port;
  return container.ports?.find((candidate: { name: string }) => candidate.name === port)?.containerPort;
}

const rendered = new Map<string, K8sObject[]>();

beforeAll(() => {
  for (const dir of kustomizations()) rendered.set(dir, render(dir));
});

describe(`kustomize (${KUBECTL_VERSION()})`, () => {
  it('renders every kustomization under deploy/k8s, with no duplicate objects', () => {
    expect([...rendered.keys()]).toEqual(
      expect.arrayContaining([
        'base',
        'worker-set',
        'monitoring',
        'overlays/dev',
        'overlays/prod',
        'overlays/prod-workers-v1',
        'overlays/prod-workers-v2',
      ]),
    );
    for (const [dir, objects] of rendered) {
      expect(objects.length, dir).toBeGreaterThan(0);
      const ids = objects.map((object) => `${object.kind}/${object.metadata.namespace ?? ''}/${object.metadata.name}`);
      expect(new Set(ids).size, `${dir}: ${ids.join(', ')}`).toBe(ids.length);
    }
    for (const [name, dirs] of Object.entries(DEPLOYMENTS)) {
      const namespaces = new Set(
        dirs.flatMap((dir) =>
          rendered
            .get(dir)!
            .filter((object) => object.kind !== 'Namespace')
            .map((object) => object.metadata.namespace),
        ),
      );
      expect([...namespaces], `${name}: every object in one namespace`).toHaveLength(1);
    }
  });

  it('validates every rendered object against the Kubernetes, prometheus-operator and KEDA schemas', async () => {
    const errors: string[] = [];
    for (const [dir, objects] of rendered) {
      for (const object of objects) {
        const error = await schemaError(object);
        if (error) errors.push(`${label(dir, object)}: ${error}`);
      }
    }
    expect(errors).toEqual([]);
    // The validator is not vacuous: a port given by name where a number belongs is refused.
    const worker = structuredClone(
      rendered
        .get('overlays/dev')!
        .find((object) => object.kind === 'StatefulSet' && object.metadata.name === 'kappa-worker')!,
    );
    podSpec(worker).containers[0].ports[0].containerPort = 'http';
    expect(await schemaError(worker)).toMatch(/containerPort must be integer/);
  });

  it('finds no field that the schemas do not define, at any depth', () => {
    const objects = [...rendered].flatMap(([dir, list]) =>
      list.map((object) => ({ label: label(dir, object), object })),
    );
    // A control: the same check must catch a misspelt probe deep in a pod template.
    const typo = structuredClone(objects.find(({ object }) => object.kind === 'StatefulSet')!.object);
    podSpec(typo).containers[0].livenesProbe = podSpec(typo).containers[0].livenessProbe;
    const errors = unknownFieldErrors([...objects, { label: 'control', object: typo }]);
    expect(errors.filter((error) => !error.startsWith('control:'))).toEqual([]);
    expect(errors.join('\n')).toMatch(/control: .*'"?livenesProbe"?' does not exist/);
  });
});

describe('NATS', () => {
  it('its server configs pass nats-server -t (unknown fields, bad values)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kappa-natsconf-'));
    try {
      // What prod's config reads from its Secrets: certificates (made here) and the roles' block.
      const tlsDir = join(dir, 'nats-tls');
      makeTestCertificates(tlsDir);
      mkdirSync(join(dir, 'nats-auth'));
      const users = Object.fromEntries(ROLES.map((role) => [role, nkeys.createUser().getPublicKey()]));
      writeFileSync(join(dir, 'nats-auth', 'auth.conf'), authorizationBlock(users as Record<Role, string>));
      mkdirSync(join(dir, 'nats'));
      for (const overlay of ['overlays/dev', 'overlays/prod']) {
        const config = rendered
          .get(overlay)!
          .find((object) => object.kind === 'ConfigMap' && object.metadata.name.startsWith('kappa-nats-config'))!;
        const path = join(dir, 'nats', 'nats.conf');
        writeFileSync(path, (config.data['nats.conf'] as string).replaceAll('/etc/nats-tls/', `${tlsDir}/`));
        const check = spawnSync(NATS_SERVER_BINARY, ['-c', path, '-t'], {
          encoding: 'utf8',
          env: { ...process.env, SERVER_NAME: 'kappa-nats-0' },
        });
        expect({ status: check.status, output: check.stdout + check.stderr }, overlay).toEqual({
          status: 0,
          output: expect.stringMatching(/configuration file .* is valid/),
        });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs 3 JetStream nodes in prod with volumes, lame-duck preStop, /healthz probes on the monitor port and a grace period longer than lame duck', () => {
    const prod = rendered.get('overlays/prod')!;
    const nats = prod.find((object) => object.kind === 'StatefulSet' && object.metadata.name === 'kappa-nats')!;
    expect(nats.spec.replicas).toBe(3);
    expect(nats.spec.volumeClaimTemplates.map((claim: K8sObject) => claim.metadata.name)).toEqual(['data']);
    const server = podSpec(nats).containers.find((container: Container) => container.name === 'nats');
    expect(server.volumeMounts).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'data' })]));
    expect(server.lifecycle.preStop.exec.command.join(' ')).toMatch(
      /nats-server --signal ldm=\/var\/run\/nats\/nats\.pid/,
    );
    const config = configMap(
      prod,
      podSpec(nats).volumes.find((volume: { name: string }) => volume.name === 'config').configMap.name,
    )!.data['nats.conf'] as string;
    expect(config).toContain('pid_file: /var/run/nats/nats.pid');
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
      expect(server[probe].httpGet.path, probe).toMatch(/^\/healthz/);
      expect(containerPort(server, server[probe].httpGet.port), probe).toBe(
        Number(/\bhttp: [\d.]+:(\d+)/.exec(config)![1]),
      );
    }
    const lameDuckSeconds = ['lame_duck_duration', 'lame_duck_grace_period'].reduce(
      (sum, key) => sum + Number(new RegExp(`${key}: (\\d+)s`).exec(config)![1]),
      0,
    );
    expect(podSpec(nats).terminationGracePeriodSeconds).toBeGreaterThan(lameDuckSeconds);
    for (const route of config.match(/nats:\/\/[^\s\]]+/g)!) {
      const [, pod, service] = /^nats:\/\/([^.]+)\.([^:]+):6222$/.exec(route)!;
      expect(
        prod.some(
          (object) => object.kind === 'Service' && object.metadata.name === service && object.spec.clusterIP === 'None',
        ),
        route,
      ).toBe(true);
      expect(Number(pod!.split('-').pop()), route).toBeLessThan(nats.spec.replicas);
    }
  });
});

describe('the manifests and the processes', async () => {
  const program = await kappaProgram();

  it('run kappa coordinator and kappa worker with only options those commands define', () => {
    for (const [dir, objects] of rendered) {
      for (const { workload, container, role } of kappaContainers(objects)) {
        const command = program.commands.find((candidate) => candidate.name() === role);
        expect(command, `${dir} ${workload.metadata.name}: args ${JSON.stringify(container.args)}`).toBeDefined();
        expect(['coordinator', 'worker']).toContain(role);
        const longNames = new Set(command!.options.map((option) => option.long));
        for (const argument of container.args!.slice(1).filter((arg) => arg.startsWith('-'))) {
          expect(longNames.has(argument.split('=')[0]), `${dir} ${workload.metadata.name}: ${argument}`).toBe(true);
        }
      }
    }
  });

  it('expose, probe and scrape the port the process serves on: /healthz for liveness, /readyz for readiness, /metrics for Prometheus', () => {
    let checked = 0;
    for (const [dir, objects] of rendered) {
      for (const { workload, container, role } of kappaContainers(objects)) {
        const where = `${dir} ${workload.metadata.name}`;
        const port = httpPortOf(container, role);
        expect(containerPort(container, 'http'), where).toBe(port);
        expect(containerPort(container, container.livenessProbe.httpGet.port), where).toBe(port);
        expect(containerPort(container, container.readinessProbe.httpGet.port), where).toBe(port);
        expect(container.livenessProbe.httpGet.path, where).toBe('/healthz');
        expect(container.readinessProbe.httpGet.path, where).toBe('/readyz');
        const annotations = workload.spec.template.metadata.annotations;
        expect(annotations, where).toMatchObject({
          'prometheus.io/scrape': 'true',
          'prometheus.io/port': String(port),
          'prometheus.io/path': '/metrics',
        });
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(5);
  });

  it("scrape every Kappa pod with a PodMonitor on its http port and /metrics, honoring Kappa's job label", () => {
    const prod = DEPLOYMENTS.prod!.flatMap((dir) => rendered.get(dir)!);
    const monitor = prod.find((object) => object.kind === 'PodMonitor' && object.metadata.name === 'kappa')!;
    const endpoint = monitor.spec.podMetricsEndpoints[0];
    expect(endpoint.path).toBe('/metrics');
    // Kappa's `job` label (the Kappa job) must win over the scrape job's: the dashboard and the KEDA query select by it.
    expect(endpoint.honorLabels).toBe(true);
    const kappaPods = kappaContainers(prod);
    expect(kappaPods.length).toBeGreaterThanOrEqual(3);
    for (const { workload, container } of kappaPods) {
      expect(selects(monitor.spec.selector, workload.spec.template.metadata.labels), workload.metadata.name).toBe(true);
      expect(containerPort(container, endpoint.port), workload.metadata.name).toBeDefined();
    }
  });

  it('select existing pods and ports from every Service, PodDisruptionBudget, PodMonitor and ScaledObject', () => {
    for (const [name, dirs] of Object.entries(DEPLOYMENTS)) {
      const objects = dirs.flatMap((dir) => rendered.get(dir)!);
      const workloads = objects.filter((object) => WORKLOAD_KINDS.has(object.kind));
      const podsOf = (selector: K8sObject['spec']['selector']) =>
        workloads.filter((workload) => selects(selector, workload.spec.template.metadata.labels));
      for (const object of objects) {
        const where = `${name}: ${object.kind}/${object.metadata.name}`;
        if (object.kind === 'Service') {
          const targets = podsOf({ matchLabels: object.spec.selector });
          expect(targets, where).toHaveLength(1);
          for (const port of object.spec.ports) {
            expect(
              podSpec(targets[0]!).containers.some(
                (container: Container) => containerPort(container, port.targetPort) !== undefined,
              ),
              `${where} port ${port.name}`,
            ).toBe(true);
          }
        } else if (object.kind === 'PodDisruptionBudget') {
          expect(podsOf(object.spec.selector), where).toHaveLength(1);
        } else if (object.kind === 'PodMonitor') {
          expect(podsOf(object.spec.selector).length, where).toBeGreaterThan(0);
        } else if (object.kind === 'ScaledObject') {
          const target = object.spec.scaleTargetRef;
          expect(
            workloads.some((workload) => workload.kind === target.kind && workload.metadata.name === target.name),
            where,
          ).toBe(true);
        } else if (object.kind === 'StatefulSet') {
          expect(
            objects.some(
              (service) =>
                service.kind === 'Service' &&
                service.metadata.name === object.spec.serviceName &&
                service.spec.clusterIP === 'None',
            ),
            `${where} serviceName`,
          ).toBe(true);
        }
      }
      // Two worker sets side by side must not select each other's pods.
      const workerSets = workloads.filter((workload) => workload.metadata.name.startsWith('kappa-worker'));
      for (const set of workerSets) expect(podsOf(set.spec.selector), set.metadata.name).toEqual([set]);
    }
  });

  it('point NATS_URL at the NATS client Service and port of the same deployment', () => {
    for (const [name, dirs] of Object.entries(DEPLOYMENTS)) {
      const objects = dirs.flatMap((dir) => rendered.get(dir)!);
      const url = new URL(configMap(objects, 'kappa-config')!.data.NATS_URL);
      const service = objects.find((object) => object.kind === 'Service' && object.metadata.name === url.hostname);
      expect(service, `${name}: ${url}`).toBeDefined();
      expect(
        service!.spec.ports.map((port: { port: number }) => port.port),
        name,
      ).toContain(Number(url.port));
      expect(service!.spec.selector['app.kubernetes.io/name'], name).toBe('nats');
    }
  });

  it('give workers a volume for RocksDB at KAPPA_STATE_DIR, task threads = CPU limit, and a grace period for the drain', () => {
    for (const [dir, objects] of rendered) {
      for (const { workload, container, role } of kappaContainers(objects).filter((found) => found.role === 'worker')) {
        const where = `${dir} ${workload.metadata.name} (${role})`;
        expect(workload.kind, where).toBe('StatefulSet');
        const stateDir = envEntry(container, 'KAPPA_STATE_DIR').value;
        const mount = container.volumeMounts.find(
          (volumeMount: { mountPath: string }) => volumeMount.mountPath === stateDir,
        );
        expect(mount, where).toBeDefined();
        expect(
          workload.spec.volumeClaimTemplates.map((claim: K8sObject) => claim.metadata.name),
          where,
        ).toContain(mount.name);
        const threads = envEntry(container, 'KAPPA_THREADS');
        expect(threads.valueFrom.resourceFieldRef, where).toMatchObject({
          resource: 'limits.cpu',
          containerName: container.name,
        });
        expect(podSpec(workload).terminationGracePeriodSeconds, where).toBeGreaterThanOrEqual(60);
      }
    }
  });

  it('name only job modules that the image contains', () => {
    const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
    const workdir = /^WORKDIR (\S+)$/m.exec(dockerfile.slice(dockerfile.lastIndexOf('\nFROM ')))![1]!;
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(\S+) (\S+)$/gm)].map(([, source, target]) => ({
      source: source!,
      target: posix.resolve(workdir, target!),
    }));
    const jobs = new Set<string>();
    for (const objects of rendered.values()) {
      for (const { container } of kappaContainers(objects).filter((found) => found.role === 'worker')) {
        const value = envEntry(container, 'KAPPA_JOB').value as string;
        for (const file of value.split(',')) jobs.add(file.trim());
      }
    }
    expect(jobs.size).toBeGreaterThanOrEqual(2);
    for (const job of jobs) {
      const copy = copied.find(({ target }) => job.startsWith(`${target}/`));
      expect(copy, `${job}: no COPY in the Dockerfile's last stage puts it in the image`).toBeDefined();
      expect(existsSync(join(REPO, copy!.source, job.slice(copy!.target.length + 1))), job).toBe(true);
    }
  });

  it('run every container unprivileged, read-only, with no capabilities, and with requests and limits', () => {
    for (const [dir, objects] of rendered) {
      for (const workload of objects.filter((object) => WORKLOAD_KINDS.has(object.kind))) {
        const spec = podSpec(workload);
        const where = `${dir} ${workload.metadata.name}`;
        expect(spec.securityContext, where).toMatchObject({
          runAsNonRoot: true,
          seccompProfile: { type: 'RuntimeDefault' },
        });
        expect(spec.securityContext.runAsUser, where).toBeGreaterThan(0);
        expect(spec.automountServiceAccountToken, where).toBe(false);
        for (const container of spec.containers as Container[]) {
          expect(container.securityContext, `${where} ${container.name}`).toMatchObject({
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ['ALL'] },
          });
          for (const kind of ['requests', 'limits']) {
            expect(Object.keys(container.resources?.[kind] ?? {}).sort(), `${where} ${container.name} ${kind}`).toEqual(
              ['cpu', 'memory'],
            );
          }
        }
      }
    }
  });
});

describe('security in prod (issue 19)', () => {
  const prod = () => DEPLOYMENTS.prod!.flatMap((dir) => rendered.get(dir)!);

  /** The Secret and key a file path in a container comes from, through its volume mounts, or undefined. */
  function secretFileAt(workload: K8sObject, container: Container, path: string) {
    for (const mount of (container.volumeMounts ?? []) as { name: string; mountPath: string }[]) {
      if (!path.startsWith(`${mount.mountPath}/`)) continue;
      const volume = podSpec(workload).volumes.find((candidate: { name: string }) => candidate.name === mount.name);
      if (!volume?.secret) return undefined;
      const file = path.slice(mount.mountPath.length + 1);
      const items = volume.secret.items as { key: string; path: string }[] | undefined;
      const key = items ? items.find((item) => item.path === file)?.key : file;
      return key === undefined
        ? undefined
        : { secretName: volume.secret.secretName as string, key, keys: items?.map((item) => item.key) };
    }
    return undefined;
  }

  it('serves NATS over TLS on the client and route ports (routes verified both ways) and includes the roles, from Secrets mounted as files', () => {
    const objects = rendered.get('overlays/prod')!;
    const nats = objects.find((object) => object.kind === 'StatefulSet' && object.metadata.name === 'kappa-nats')!;
    const server = podSpec(nats).containers.find((container: Container) => container.name === 'nats') as Container;
    const configPath = server.command![server.command!.indexOf('--config') + 1]!;
    const config = configMap(
      objects,
      podSpec(nats).volumes.find((volume: { name: string }) => volume.name === 'config').configMap.name,
    )!.data['nats.conf'] as string;
    const [client, cluster] = config.split(/^cluster \{/m);
    for (const [where, block] of [
      ['client port', client!],
      ['routes', cluster!],
    ] as const) {
      expect(block, where).toMatch(/\btls \{/);
      for (const [field, key] of [
        ['cert_file', 'tls.crt'],
        ['key_file', 'tls.key'],
        ['ca_file', 'ca.crt'],
      ] as const) {
        const file = new RegExp(`${field}: (\\S+)`).exec(block)?.[1];
        expect(file, `${where} ${field}`).toBeDefined();
        expect(secretFileAt(nats, server, file!), `${where} ${field} ${file}`).toMatchObject({
          secretName: 'kappa-nats-tls',
          key,
        });
      }
    }
    expect(cluster).toMatch(/verify: true/);
    const include = /^include "([^"]+)"/m.exec(config)?.[1];
    expect(include).toBeDefined();
    const authFile = posix.resolve(posix.dirname(configPath), include!);
    expect(secretFileAt(nats, server, authFile), authFile).toMatchObject({
      secretName: 'kappa-nats-auth',
      key: 'auth.conf',
    });
  });

  it("gives each Kappa process only its role's nkey seed, the CA and the API token, as files from Secrets, and no secret in its environment or arguments", () => {
    let checked = 0;
    for (const dir of DEPLOYMENTS.prod!) {
      for (const { workload, container, role } of kappaContainers(rendered.get(dir)!)) {
        const where = `${dir} ${workload.metadata.name}`;
        const file = (name: string) => envEntry(container, name)?.value as string | undefined;
        expect(secretFileAt(workload, container, file('NATS_NKEY_SEED_FILE') ?? '-'), where).toEqual({
          secretName: 'kappa-nats-credentials',
          key: `${role}.nk`,
          keys: [`${role}.nk`],
        });
        expect(secretFileAt(workload, container, file('NATS_CA') ?? '-'), where).toMatchObject({
          secretName: 'kappa-nats-tls',
          key: 'ca.crt',
          keys: ['ca.crt'],
        });
        expect(secretFileAt(workload, container, file('KAPPA_API_TOKEN_FILE') ?? '-'), where).toMatchObject({
          secretName: 'kappa-api-token',
          key: 'token',
        });
        const names = envNames(container, prod());
        for (const secret of ['NATS_PASSWORD', 'NATS_TOKEN', 'NATS_USER', 'KAPPA_API_TOKEN', 'NATS_CREDS'])
          expect(names, where).not.toContain(secret);
        for (const flag of ['--password', '--token', '--api-token', '--user'])
          expect(container.args ?? [], where).not.toContain(flag);
        checked++;
      }
    }
    expect(checked).toBe(3);
  });

  it('lets only Kappa pods and labelled clients reach NATS, only NATS nodes its routes, and only Prometheus and labelled apps the HTTP ports', () => {
    const objects = prod();
    const policies = objects.filter((object) => object.kind === 'NetworkPolicy');
    const podsOf = (component: string) =>
      objects
        .filter((object) => WORKLOAD_KINDS.has(object.kind))
        .filter((workload) => workload.spec.template.metadata.labels['app.kubernetes.io/component'] === component);
    const policyOf = (workload: K8sObject) => {
      const selecting = policies.filter((policy) =>
        selects(policy.spec.podSelector, workload.spec.template.metadata.labels),
      );
      expect(selecting, workload.metadata.name).toHaveLength(1);
      expect(selecting[0]!.spec.policyTypes).toEqual(['Ingress']);
      return selecting[0]!;
    };
    /** The peers a rule admits, each as 'pods:<labels>' (this namespace) or 'any-namespace:<labels>'. */
    type IngressRule = {
      ports: { port: number }[];
      from?: { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: object }[];
    };
    const peers = (rule: IngressRule) => {
      expect(rule.from?.length, 'a rule without from admits everyone').toBeGreaterThan(0);
      return rule.from!.map(
        (peer) =>
          `${peer.namespaceSelector ? 'any-namespace' : 'pods'}:${JSON.stringify(Object.fromEntries(Object.entries(peer.podSelector?.matchLabels ?? {}).sort()))}`,
      );
    };
    const rulesByPort = (policy: K8sObject) =>
      new Map<number, string[]>(
        policy.spec.ingress.map((rule: IngressRule) => {
          expect(rule.ports, `${policy.metadata.name}: a rule without ports admits every port`).toHaveLength(1);
          return [rule.ports[0]!.port, peers(rule)];
        }),
      );
    const prometheus = 'any-namespace:{"app.kubernetes.io/name":"prometheus"}';

    const [nats] = podsOf('nats');
    const natsRules = rulesByPort(policyOf(nats!));
    expect([...natsRules.keys()].sort()).toEqual([4222, 6222, 7777]);
    expect(natsRules.get(4222)).toEqual([
      'pods:{"app.kubernetes.io/name":"kappa"}',
      'any-namespace:{"kappa.dev/nats-client":"true"}',
    ]);
    for (const kappaPod of [...podsOf('coordinator'), ...podsOf('worker')])
      expect(
        selects({ matchLabels: { 'app.kubernetes.io/name': 'kappa' } }, kappaPod.spec.template.metadata.labels),
      ).toBe(true);
    expect(natsRules.get(6222)).toEqual([
      'pods:{"app.kubernetes.io/component":"nats","app.kubernetes.io/name":"nats"}',
    ]);
    expect(natsRules.get(7777)).toEqual([prometheus]);

    const workloads = [...podsOf('coordinator'), ...podsOf('worker')];
    expect(workloads.length).toBe(3);
    for (const workload of workloads) {
      const { container, role } = kappaContainers([workload])[0]!;
      const rules = rulesByPort(policyOf(workload));
      expect([...rules.keys()], workload.metadata.name).toEqual([httpPortOf(container, role)]);
      expect([...rules.values()][0]).toEqual([prometheus, 'any-namespace:{"kappa.dev/api-client":"true"}']);
    }
  });
});

describe('the Dockerfile', () => {
  const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lastStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const instructions = (text: string, name: string) =>
    [...text.matchAll(new RegExp(`^${name} (.+)$`, 'gm'))].map((match) => match[1]!.trim());

  it('builds dist/cli/main.js (the package bin) and runs it under tini as PID 1', () => {
    const packageJson = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(packageJson.bin.kappa).toBe('dist/cli/main.js');
    expect(existsSync(join(REPO, 'dist/cli/main.js')), 'npm run build produces it').toBe(true);
    const entrypoint = JSON.parse(instructions(lastStage, 'ENTRYPOINT')[0]!) as string[];
    const workdir = instructions(lastStage, 'WORKDIR').pop()!;
    expect(entrypoint).toEqual(['/usr/bin/tini', '--', 'node', posix.join(workdir, packageJson.bin.kappa!)]);
    expect(instructions(lastStage, 'COPY')).toContain('--from=build /app/dist ./dist');
    expect(
      instructions(dockerfile, 'RUN').some((run) => /npm ci\b/.test(run)) &&
        instructions(dockerfile, 'RUN').some((run) => /npm run build && npm prune --omit=dev/.test(run)),
    ).toBe(true);
    const runtimePackages = instructions(lastStage, 'RUN').find((run) => run.includes('apt-get install'))!;
    expect(runtimePackages).toMatch(/\blibatomic1\b/);
    expect(runtimePackages).toMatch(/\btini\b/);
  });

  it('copies every folder tsconfig.json compiles, and .dockerignore excludes none of them', () => {
    const tsconfig = JSON.parse(readFileSync(join(REPO, 'tsconfig.json'), 'utf8')) as { include: string[] };
    const copiedSources = instructions(dockerfile, 'COPY')
      .filter((copy) => !copy.startsWith('--from'))
      .flatMap((copy) => copy.split(/\s+/).slice(0, -1));
    for (const path of tsconfig.include) expect(copiedSources, path).toContain(path);
    const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'));
    const glob = (pattern: string) =>
      new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    for (const path of copiedSources) {
      expect(existsSync(join(REPO, path)), path).toBe(true);
      expect(
        ignored.filter((pattern) => glob(pattern).test(path)),
        path,
      ).toEqual([]);
    }
    for (const heavy of ['node_modules', 'dist', '.git', '.kappa']) expect(ignored, heavy).toContain(heavy);
  });

  it('runs as the non-root uid the pods run as, with the state dir as a volume, exposing the default HTTP ports', () => {
    // USER node: uid 1000 in the official node images; the pods' runAsUser must match to write the volume.
    expect(instructions(lastStage, 'USER')).toEqual(['node']);
    for (const { workload } of [...rendered.values()].flatMap(kappaContainers))
      expect(podSpec(workload).securityContext.runAsUser, workload.metadata.name).toBe(1000);
    const stateDir = /KAPPA_STATE_DIR=(\S+)/.exec(lastStage)![1]!;
    expect(instructions(lastStage, 'VOLUME')).toEqual([JSON.stringify([stateDir])]);
    for (const { container } of [...rendered.values()]
      .flatMap(kappaContainers)
      .filter((found) => found.role === 'worker')) {
      expect(envEntry(container, 'KAPPA_STATE_DIR').value).toBe(stateDir);
    }
    const exposed = instructions(lastStage, 'EXPOSE')[0]!.split(/\s+/).map(Number);
    expect(exposed.sort()).toEqual(
      [workerConfig.parse({ job: 'x' }).httpPort, coordinatorConfig.parse({}).httpPort].sort(),
    );
  });
});

function KUBECTL_VERSION(): string {
  try {
    return kubectlVersion();
  } catch (error) {
    return `kubectl not runnable: ${(error as Error).message.split('\n')[0]}`;
  }
}
