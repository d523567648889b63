// A kappa subcommand run as a child process (what `kappa dev` starts), its output prefixed.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dyingWithParent } from './local-nats-server.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

export class KappaChild {
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;

  constructor(
    readonly label: string,
    args: string[],
  ) {
    // Dies with this process however it dies, so no worker is left running against a stopped server.
    const [command, commandArgs] = dyingWithParent(process.execPath, [MAIN, ...args]);
    this.child = spawn(command, commandArgs, { stdio: ['ignore', 'inherit', 'pipe'] });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line) process.stderr.write(`[${label}] ${line}\n`);
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** The process id (for its CPU time in /proc), undefined if it could not be spawned. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** SIGTERM (graceful: tasks finish their batch), then waits for the exit code. */
  stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}
