// Prometheus metrics of a coordinator replica (STYLE: kappa_<noun>_<unit>).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export class CoordinatorMetrics {
  readonly registry = new Registry();
  readonly leader = new Gauge({ name: 'kappa_coordinator_leader', help: '1 while this replica is the leader, else 0', registers: [this.registry] });
  readonly tasksAssigned = new Gauge({
    name: 'kappa_tasks_assigned',
    help: 'Tasks the leader has assigned to each worker',
    labelNames: ['worker'] as const,
    registers: [this.registry],
  });
  readonly rebalances = new Counter({
    name: 'kappa_rebalances_total',
    help: 'Reconciliation rounds that started moving at least one task',
    registers: [this.registry],
  });
  readonly workers = new Gauge({ name: 'kappa_workers', help: 'Live workers known to this replica', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
