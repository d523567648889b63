// Runs the built `kappa` CLI (dist/cli/main.js) as a child process, as a user would. Every
// process dies with the test process (parent-death signal), and a long-running one still alive
// after its test file is killed (test/harness/setup.ts calls killAllKappaProcesses).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dyingWithParent } from '../../cli/local-nats-server.js';
import { pollUntil } from './poll.js';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion. */
export function kappa(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [command, commandArgs] = dyingWithParent(process.execPath, [CLI, ...args]);
    const child = spawn(command, commandArgs, {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

const liveProcesses = new Set<KappaProcess>();

/** SIGKILLs every KappaProcess of this test file that is still running. */
export async function killAllKappaProcesses(): Promise<void> {
  await Promise.all([...liveProcesses].map((process) => process.kill()));
}

/** A long-running kappa process (worker, coordinator) whose logs are kept and searchable. */
export class KappaProcess {
  readonly child: ChildProcess;
  logs = '';
  private readonly exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    const [command, commandArgs] = dyingWithParent(process.execPath, [CLI, ...args]);
    this.child = spawn(command, commandArgs, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (chunk) => (this.logs += chunk));
    this.child.stderr!.on('data', (chunk) => (this.logs += chunk));
    liveProcesses.add(this);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        liveProcesses.delete(this);
        resolve(code);
      }),
    );
  }

  /** Waits until a log line matches, returning the match; fails at once if the process exits first. */
  waitForLog(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    return pollUntil(() => this.logs.match(pattern), {
      what: `a log line matching ${pattern}`,
      timeoutMs,
      intervalMs: 50,
      giveUpIf: () =>
        this.child.exitCode === null ? undefined : `the process exited with code ${this.child.exitCode}`,
      context: () => `logs:\n${this.logs.slice(-3000)}`,
    });
  }

  /** SIGTERM and the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  kill(): Promise<number | null> {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
    return this.exited;
  }
}

/** What `workerArgs` puts on a `kappa worker` command line. */
export interface WorkerArgs {
  /** Job modules (`--job`, repeated). */
  jobs: string[];
  id: string;
  stateDir: string;
  threads?: number;
  checkpointInterval?: string;
  /** For /metrics; a free one when absent. */
  httpPort?: number;
  /** `warn` unless a test reads the worker's info logs (its HTTP port, for one). */
  logLevel?: string;
}

/** The arguments of a `kappa worker` in pool mode, without `--nats`. */
export function workerArgs(options: WorkerArgs): string[] {
  return [
    'worker',
    ...options.jobs.flatMap((job) => ['--job', job]),
    '--id',
    options.id,
    '--threads',
    String(options.threads ?? 2),
    '--state-dir',
    options.stateDir,
    '--http-port',
    String(options.httpPort ?? 0),
    ...(options.checkpointInterval ? ['--checkpoint-interval', options.checkpointInterval] : []),
    '--log-level',
    options.logLevel ?? 'warn',
  ];
}
