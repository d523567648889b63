// The `kappa` processes of bench/replay.ts: spawning them (optionally under `node --cpu-prof`)
// with their output kept, waiting on them, and what they report: the coordinator's cluster status
// over NATS and each worker's tasks on its HTTP /status.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  decodeMessage,
  encodeMessage,
  parseAdminReply,
  subjects,
  type ClusterStatus,
  type TaskStatus,
} from '../protocol/index.js';

/** A `kappa` child process with its output kept. */
export interface Child {
  readonly pid: number;
  readonly logs: string;
  readonly exited: Promise<number | null>;
  stop(): Promise<number | null>;
  kill(): Promise<number | null>;
}

/** Every `kappa` process the bench started, from one build of the CLI. */
export class KappaProcesses {
  private readonly processes: Child[] = [];

  /**
   * `cli`: the path of dist/cli/main.js (or of another build, to compare before and after a
   * change); `env`: added to this process's environment for every child (where PostgreSQL and Redis are).
   */
  constructor(
    private readonly cli: string,
    private readonly env: Record<string, string> = {},
  ) {}

  /** Spawns `kappa …`; with a profile dir under `node --cpu-prof` (one profile per thread, written at exit). */
  spawn(args: string[], profileDir?: string): Child {
    const nodeFlags = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
    const node = spawn(process.execPath, [...nodeFlags, this.cli, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.env },
    });
    const exited = new Promise<number | null>((resolve) => node.once('exit', (code) => resolve(code)));
    const signal = (name: NodeJS.Signals) => () => {
      if (node.exitCode === null && node.signalCode === null) node.kill(name);
      return exited;
    };
    const child = { pid: node.pid!, logs: '', exited, stop: signal('SIGTERM'), kill: signal('SIGKILL') };
    node.stdout.on('data', (chunk) => (child.logs += chunk));
    node.stderr.on('data', (chunk) => (child.logs += chunk));
    this.processes.push(child);
    return child;
  }

  /** Runs a `kappa` command to completion. */
  async run(args: string[]): Promise<{ code: number | null; logs: string }> {
    const child = this.spawn(args);
    return { code: await child.exited, logs: child.logs };
  }

  /** Polls `probe` until it returns a value; on timeout throws with the end of every process's output. */
  async waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 200): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        const value = await probe();
        if (value !== undefined) return value;
      } catch (error) {
        last = error;
      }
      await sleep(intervalMs);
    }
    throw new Error(
      `timed out waiting for ${what} (${String(last ?? '')})\n${this.processes.map((child) => child.logs.slice(-1500)).join('\n---\n')}`,
    );
  }

  /** SIGKILLs every process still running. */
  async killAll(): Promise<void> {
    await Promise.all(this.processes.map((child) => child.kill()));
  }
}

/** The cluster status the leading coordinator answers on the admin subject. */
export async function clusterStatus(nc: NatsConnection): Promise<ClusterStatus> {
  const reply = decodeMessage(
    (await nc.request(subjects.adminRequest('status'), encodeMessage({ type: 'status.request' }), { timeout: 3_000 }))
      .data,
  );
  if (reply.type !== 'reply.ok') throw new Error(`status failed: ${JSON.stringify(reply)}`);
  return parseAdminReply('status', reply.detail);
}

/** The tasks a worker process reports on its /status (refreshed by its threads every 250 ms). */
export async function workerTasks(url: string): Promise<TaskStatus[]> {
  const response = await fetch(`${url}/status`);
  const body = (await response.json()) as { tasks?: TaskStatus[] } | null;
  return body?.tasks ?? [];
}
