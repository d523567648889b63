// The worker pool's /metrics: the main thread's own registry (process metrics, pool gauges)
// merged with the latest `kappa_*` snapshot each task host thread posted, with prom-client's
// AggregatorRegistry (the cluster-module recipe, applied to threads). No thread needs a port.
import {
  AggregatorRegistry,
  Counter,
  Gauge,
  Registry,
  collectDefaultMetrics,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';

type Snapshot = MetricObjectWithValues<MetricValue<string>>[];

export class PoolMetrics {
  readonly registry = new Registry();
  readonly threads = new Gauge({
    name: 'kappa_worker_threads',
    help: 'Task host threads currently alive.',
    registers: [this.registry],
  });
  readonly threadRestarts = new Counter({
    name: 'kappa_worker_thread_restarts_total',
    help: 'Task host threads replaced after dying.',
    registers: [this.registry],
  });
  readonly tasks = new Gauge({
    name: 'kappa_worker_tasks',
    help: 'Tasks assigned to this worker, by job version and state (restoring, running, releasing, failed).',
    labelNames: ['job', 'version', 'state'] as const,
    registers: [this.registry],
  });
  private readonly snapshots = new Map<number, Snapshot>();
  /** Counters of threads that died, so totals stay monotonic across a thread's replacement. */
  private readonly retired: Snapshot[] = [];

  readonly contentType = this.registry.contentType;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  update(threadIndex: number, snapshot: Snapshot): void {
    this.snapshots.set(threadIndex, snapshot);
  }

  /** A thread died: keep its counters, drop its gauges (they described tasks it no longer runs). */
  retire(threadIndex: number): void {
    const snapshot = this.snapshots.get(threadIndex);
    this.snapshots.delete(threadIndex);
    // prom-client types `type` as a numeric enum, but at run time it is the string 'counter'.
    if (snapshot) this.retired.push(snapshot.filter((metric) => String(metric.type) === 'counter'));
  }

  async metrics(): Promise<string> {
    const own = await this.registry.getMetricsAsJSON();
    return AggregatorRegistry.aggregate([own, ...this.snapshots.values(), ...this.retired]).metrics();
  }
}
