// The `kappa` processes of bench/replay.ts: spawning them (optionally under `node --cpu-prof`)
// with their output kept, waiting on them, and what they report: the coordinator's cluster status
// over NATS and each worker's tasks on its HTTP /status, and whether a task has stopped moving.
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

  /**
   * Polls `probe` until it returns a value; on timeout, or as soon as `giveUpIf` names a reason
   * (checked after each probe), throws with the end of every process's output.
   */
  async waitFor<T>(
    what: string,
    probe: () => Promise<T | undefined>,
    timeoutMs: number,
    intervalMs = 200,
    giveUpIf: () => string | undefined = () => undefined,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    let reason: string | undefined;
    while (Date.now() < deadline) {
      try {
        const value = await probe();
        if (value !== undefined) return value;
      } catch (error) {
        last = error;
      }
      reason = giveUpIf();
      if (reason !== undefined) break;
      await sleep(intervalMs);
    }
    throw new Error(
      `${reason === undefined ? 'timed out waiting' : `gave up (${reason}) waiting`} for ${what} (${String(last ?? '')})\n${this.processes.map((child) => child.logs.slice(-1500)).join('\n---\n')}`,
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
  // A stopped or stalled worker must not hold the poll up: the caller's give-up check runs between polls.
  const response = await fetch(`${url}/status`, { signal: AbortSignal.timeout(5_000) });
  const body = (await response.json()) as { tasks?: TaskStatus[] } | null;
  return body?.tasks ?? [];
}

/** A task whose position has not moved for this long while behind is stuck (a loaded machine has shown 14 s checkpoints). */
const STALL_MS = 120_000;

/**
 * Each partition's last reported sequence and since when: a task that has not moved for
 * STALL_MS while behind stops the run with the processes' logs, instead of the 30-minute timeout.
 */
export class PartitionProgress {
  private readonly seen = new Map<number, { sequence: number; sinceMs: number }>();

  see(partition: number, sequence: number): void {
    if (this.seen.get(partition)?.sequence !== sequence) this.seen.set(partition, { sequence, sinceMs: Date.now() });
  }

  stalled(lastSequence: readonly number[]): string | undefined {
    for (const [partition, { sequence, sinceMs }] of this.seen) {
      if (sequence < lastSequence[partition]! && Date.now() - sinceMs > STALL_MS)
        return `partition ${partition}'s task at sequence ${sequence} of ${lastSequence[partition]}, no progress for ${STALL_MS / 1000} s`;
    }
    return undefined;
  }
}
