// Renders the Kubernetes manifests in deploy/k8s with kubectl's built-in kustomize (offline, no
// cluster), and reads what the deployment tests need from the rendered objects: containers, their
// environment with valueFrom resolved as the kubelet would, ConfigMaps.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const K8S_DIR = join(REPO, 'deploy/k8s');
/** kubectl ≥ 1.14 (`kubectl kustomize`); KUBECTL_BIN picks another one (e.g. Debian's 1.20). */
export const KUBECTL = process.env.KUBECTL_BIN ?? 'kubectl';

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered objects are read loosely; the schema test checks their shape */
/** A rendered Kubernetes object; the tests read it loosely and the schema test checks its shape. */
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: any };
  [key: string]: any;
};
export type Container = {
  name: string;
  args?: string[];
  command?: string[];
  env?: any[];
  envFrom?: any[];
  [key: string]: any;
};
/* eslint-enable @typescript-eslint/no-explicit-any */

/** Every directory under deploy/k8s holding a kustomization.yaml, relative to deploy/k8s. */
export function kustomizations(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    if (existsSync(join(dir, 'kustomization.yaml'))) found.push(relative(K8S_DIR, dir));
    for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) walk(join(dir, entry.name));
  };
  walk(K8S_DIR);
  return found.sort();
}

/** The kubectl version line and its kustomize version (kubectl ≥ 1.24 prints it). */
export function kubectlVersion(): string {
  return execFileSync(KUBECTL, ['version', '--client'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    .trim()
    .replace(/\n/g, ', ');
}

/** `kubectl kustomize deploy/k8s/<dir>`, parsed. Deprecation warnings (stderr) are ignored. */
export function render(dir: string): K8sObject[] {
  const output = execFileSync(KUBECTL, ['kustomize', join(K8S_DIR, dir)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 16 << 20,
  });
  return parseAllDocuments(output)
    .map((document) => {
      if (document.errors.length > 0)
        throw new Error(`kustomize output of ${dir} is not YAML: ${document.errors[0]!.message}`);
      return document.toJS() as K8sObject | null;
    })
    .filter((object): object is K8sObject => object !== null);
}

export const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job']);

/** The pod template's spec of a workload. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function podSpec(workload: K8sObject): any {
  return workload.spec.template.spec;
}

/** Containers running the Kappa image (their command is `kappa <subcommand>`), with their workload. */
export function kappaContainers(objects: K8sObject[]): { workload: K8sObject; container: Container; role: string }[] {
  const found = [];
  for (const workload of objects.filter((object) => WORKLOAD_KINDS.has(object.kind))) {
    for (const container of podSpec(workload).containers as Container[]) {
      if (!/(^|\/)kappa(:|@|$)/.test(container.image ?? '')) continue;
      found.push({ workload, container, role: container.args?.[0] ?? '' });
    }
  }
  return found;
}

/** Names of the environment variables a container gets: env entries and the keys of envFrom ConfigMaps. */
export function envNames(container: Container, objects: K8sObject[]): string[] {
  const names = (container.env ?? []).map((variable: { name: string }) => variable.name);
  for (const source of container.envFrom ?? [])
    names.push(...Object.keys(configMap(objects, source.configMapRef.name)?.data ?? {}));
  return names;
}

/** The container's env entry of that name. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function envEntry(container: Container, name: string): any {
  return container.env?.find((variable: { name: string }) => variable.name === name);
}

export function configMap(objects: K8sObject[], name: string): K8sObject | undefined {
  return objects.find((object) => object.kind === 'ConfigMap' && object.metadata.name === name);
}

/**
 * The environment the kubelet would give the container: envFrom ConfigMaps, then env (which wins),
 * with fieldRef metadata.name as `podName` and resourceFieldRef as the container's resources.
 * A ConfigMap that is not in `objects` (worker sets use the platform's) is looked up in `shared`.
 */
export function resolvedEnv(
  container: Container,
  objects: K8sObject[],
  podName: string,
  shared: K8sObject[] = [],
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    const map = configMap(objects, source.configMapRef.name) ?? configMap(shared, source.configMapRef.name);
    if (!map)
      throw new Error(`container ${container.name}: envFrom ConfigMap ${source.configMapRef.name} is not rendered`);
    Object.assign(env, map.data);
  }
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = String(variable.value);
    else if (variable.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[variable.name] = podName;
    else if (variable.valueFrom?.resourceFieldRef) {
      const { resource, divisor } = variable.valueFrom.resourceFieldRef;
      const [kind, name] = resource.split('.');
      env[variable.name] = String(Math.ceil(quantity(container.resources[kind][name]) / quantity(divisor ?? '1')));
    } else
      throw new Error(`container ${container.name}: env ${variable.name} has a valueFrom the tests do not resolve`);
  }
  return env;
}

/** A CPU quantity ("2", "500m") as cores. */
function quantity(value: string | number): number {
  const text = String(value);
  return text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text);
}
