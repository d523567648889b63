// Spawns a real Prometheus server (Debian's `prometheus` package; scripts/ensure-system-deps.sh
// installs it) scraping the given targets, on a random port with its own config and TSDB in a
// temp dir, and queries it through its HTTP API (/api/v1/query), as Grafana would.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './nats-server.js';
import { pollUntil } from './poll.js';

export const PROMETHEUS_BINARY =
  process.env.PROMETHEUS_BIN ??
  ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((path) => existsSync(path)) ??
  'prometheus';

/** One sample of an instant query: the series' labels and its value. */
export interface PrometheusSample {
  metric: Record<string, string>;
  value: number;
}

export class PrometheusServer {
  private logs = '';

  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {
    child.stdout!.on('data', (chunk) => (this.logs += chunk));
    child.stderr!.on('data', (chunk) => (this.logs += chunk));
  }

  /**
   * Starts Prometheus scraping `targets` (host:port, path /metrics) every `scrapeIntervalMs`.
   * `honor_labels` keeps Kappa's own `job` label (the job name) instead of renaming it
   * `exported_job`; deployments need the same setting.
   */
  static async start(targets: string[], { scrapeIntervalMs = 1_000 } = {}): Promise<PrometheusServer> {
    const dir = mkdtempSync(join(tmpdir(), 'kappa-prometheus-'));
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        `  scrape_interval: ${scrapeIntervalMs}ms`,
        `  scrape_timeout: ${scrapeIntervalMs}ms`,
        `  evaluation_interval: ${scrapeIntervalMs}ms`,
        'scrape_configs:',
        '  - job_name: kappa',
        '    honor_labels: true',
        '    static_configs:',
        `      - targets: [${targets.map((target) => `'${target}'`).join(', ')}]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    const child = spawn(
      PROMETHEUS_BINARY,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const server = new PrometheusServer(`http://127.0.0.1:${port}`, child, dir);
    let spawnError: Error | undefined;
    child.once('error', (error) => (spawnError = error));
    try {
      await pollUntil(
        () =>
          fetch(`${server.url}/-/ready`).then(
            (response) => response.ok,
            () => false,
          ),
        {
          what: 'prometheus to become ready',
          timeoutMs: 20_000,
          intervalMs: 100,
          giveUpIf: () =>
            spawnError
              ? `cannot run ${PROMETHEUS_BINARY} (install Debian's prometheus package or set PROMETHEUS_BIN): ${spawnError.message}`
              : child.exitCode === null
                ? undefined
                : `prometheus exited with code ${child.exitCode}`,
          context: () => `logs:\n${server.logs.slice(-3000)}`,
        },
      );
      return server;
    } catch (error) {
      // A process that never spawned has nothing to stop (and would never report its exit).
      if (spawnError) rmSync(dir, { recursive: true, force: true });
      else await server.stop();
      throw error;
    }
  }

  /** An instant query; throws with Prometheus's error for a bad expression. */
  async query(expression: string): Promise<PrometheusSample[]> {
    const response = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expression)}`);
    const body = (await response.json()) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
    };
    if (body.status !== 'success') throw new Error(`query ${expression} failed: ${body.error ?? response.status}`);
    if (body.data!.resultType !== 'vector') return [];
    return body.data!.result.map((sample) => ({ metric: sample.metric, value: Number(sample.value[1]) }));
  }

  /** Logs so far, for failure messages. */
  get output(): string {
    return this.logs;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
