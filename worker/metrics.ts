// The worker's Prometheus metrics (prom-client). Tasks hold their labelled children, so the
// hot path never looks a label set up per event.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly eventsProcessed = new Counter({
    name: 'kappa_events_processed_total',
    help: 'Events handled by a task (dead letters excluded).',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'kappa_dead_letters_total',
    help: 'Events sent to the dead-letter subject, by reason.',
    labelNames: ['job', 'version', 'reason'] as const,
    registers: [this.registry],
  });
  readonly lateEvents = new Counter({
    name: 'kappa_late_events_total',
    help: 'Late events: outcome "updated" re-emitted a fired window within the allowed lateness; "dropped" missed a purged window and went to the late-data subject.',
    labelNames: ['job', 'version', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly outputs = new Counter({
    name: 'kappa_outputs_total',
    help: 'Results written to the sink (after collapsing re-emissions within a batch).',
    labelNames: ['job', 'version'] as const,
    registers: [this.registry],
  });
  readonly lagMessages = new Gauge({
    name: 'kappa_consumer_lag_messages',
    help: 'Messages in the partition not yet processed by the task.',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly watermarkLagSeconds = new Gauge({
    name: 'kappa_watermark_lag_seconds',
    help: 'Processing time minus the task watermark.',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly taskRestarts = new Counter({
    name: 'kappa_task_restarts_total',
    help: 'Tasks restarted after a failure.',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });

  readonly checkpointDuration = new Histogram({
    name: 'kappa_checkpoint_duration_seconds',
    help: 'Time to take and commit one checkpoint (flush, upload, KV commit).',
    labelNames: ['job', 'version', 'partition'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly checkpointBytes = new Counter({
    name: 'kappa_checkpoint_bytes_total',
    help: 'Bytes uploaded to the checkpoint object store (incremental: only what changed).',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly checkpointSizeBytes = new Gauge({
    name: 'kappa_checkpoint_size_bytes',
    help: 'Bytes uploaded by the last checkpoint of a task.',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly checkpoints = new Counter({
    name: 'kappa_checkpoints_total',
    help: 'Checkpoints attempted, by outcome: committed, failed (write or upload error), fenced (a newer epoch owns the task).',
    labelNames: ['job', 'version', 'outcome'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
