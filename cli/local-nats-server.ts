// A nats-server process with its own config and store, on ports it reports through a ports file
// (`port: -1` style, as nats.js's own tests do), restartable on the same ports. `kappa dev` runs
// one; the test harness builds single servers and clusters from it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const NATS_SERVER_BINARY = process.env.NATS_SERVER_BIN ?? findNatsServer();

function findNatsServer(): string {
  const candidates = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];
  return candidates.find((candidate) => existsSync(candidate)) ?? 'nats-server';
}

export interface PortsFile {
  nats?: string[];
  cluster?: string[];
  monitoring?: string[];
}

export interface ServerOptions {
  /** Extra configuration appended to the generated server config (nats-server syntax). */
  extraConfig?: string;
  /** Name of the server inside a cluster. */
  serverName?: string;
}

/** How a NatsServer process is run. */
export interface NatsServerProcessOptions {
  /**
   * SIGKILL the server when the process that spawned it dies, however it dies (even SIGKILL),
   * so a crashed or killed test run leaves no server holding its ports and store.
   */
  dieWithParent?: boolean;
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((candidate) => existsSync(candidate));

/**
 * The command line that runs `command` so that it is SIGKILLed when this process dies: Linux's
 * parent-death signal, set by util-linux `setpriv` before it execs the command (same pid, so
 * signals sent to the child reach the command). Where `setpriv` is missing the command runs as is.
 */
export function dyingWithParent(command: string, args: readonly string[]): [string, string[]] {
  return SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, [...args]];
}

/**
 * The ports a server wrote to its ports file, or undefined while the file is still being written:
 * nats-server creates the file before it has written the JSON, so an early read sees nothing or
 * half an object.
 */
export function readPortsFile(path: string): PortsFile | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const ports = JSON.parse(text) as PortsFile;
    return Array.isArray(ports.nats) && ports.nats.length > 0 ? ports : undefined;
  } catch {
    return undefined;
  }
}

/** One nats-server process with its own store and config, restartable on the same ports. */
export class NatsServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  clientPort = -1;
  clusterPort = -1;
  monitorPort = -1;

  constructor(
    readonly dir: string,
    private readonly configBody: (server: NatsServer) => string,
    private readonly processOptions: NatsServerProcessOptions = {},
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.clientPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts the process and waits until it has written its ports file and accepts clients. */
  async start(): Promise<void> {
    const portsDir = join(this.dir, 'ports');
    rmSync(portsDir, { recursive: true, force: true });
    mkdirSync(portsDir, { recursive: true });
    const configPath = join(this.dir, 'server.conf');
    writeFileSync(configPath, this.configBody(this) + `\nports_file_dir: "${portsDir}"\n`);
    const logPath = join(this.dir, 'server.log');
    const args = ['-c', configPath, '-l', logPath];
    const [command, commandArgs] = this.processOptions.dieWithParent
      ? dyingWithParent(NATS_SERVER_BINARY, args)
      : [NATS_SERVER_BINARY, args];
    // Its own process group: Ctrl-C in a terminal signals the whole foreground group, and a server
    // that died with it would leave the workers' graceful stop (a final checkpoint) waiting for it.
    // Whoever started it stops it last (and `dieWithParent` still ends it if that process dies).
    const child = spawn(command, commandArgs, { stdio: 'ignore', detached: true });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const startError = new Promise<never>((_, reject) =>
      child.once('error', (error) => reject(new Error(`cannot start ${NATS_SERVER_BINARY}: ${error.message}`))),
    );
    await Promise.race([this.waitForPorts(portsDir, logPath), startError]);
  }

  private async waitForPorts(portsDir: string, logPath: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (!this.running) break;
      const file = readdirSync(portsDir).find((name) => name.endsWith('.ports'));
      const ports = file === undefined ? undefined : readPortsFile(join(portsDir, file));
      if (ports) {
        this.clientPort = portOf(ports.nats?.[0]) ?? this.clientPort;
        this.clusterPort = portOf(ports.cluster?.[0]) ?? this.clusterPort;
        this.monitorPort = portOf(ports.monitoring?.[0]) ?? this.monitorPort;
        return;
      }
      await sleep(20);
    }
    let log = '';
    try {
      log = readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      // no log written
    }
    throw new Error(`nats-server in ${this.dir} did not report its ports within 15 s\n${log}`);
  }

  /** SIGKILL: the process dies without flushing or saying goodbye. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child?.kill('SIGKILL');
    await this.exited;
  }

  /** SIGSTOP: the process freezes, its sockets stay open. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** SIGCONT after pause(). */
  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** Graceful stop (SIGTERM). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child?.kill('SIGTERM');
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills (if running) and starts again on the same ports with the same store. */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }
}

function portOf(address: string | undefined): number | undefined {
  if (!address) return undefined;
  const match = /:(\d+)$/.exec(address);
  return match ? Number(match[1]) : undefined;
}
