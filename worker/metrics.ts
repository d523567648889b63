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
  readonly handlerBatchDuration = new Histogram({
    name: 'kappa_handler_batch_duration_seconds',
    help: 'Time to run one batch through the processor: decode, state activation, handlers, windows and timers (sinks and flushes excluded). Timed per batch, not per event, to keep the hot path free of per-event work; rate(_sum) / rate(kappa_events_processed_total) is the mean time per event.',
    labelNames: ['job', 'version'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly actorsActive = new Gauge({
    name: 'kappa_actors_active',
    help: "Actors (keys) of a task whose keyed state is loaded in memory, not yet evicted: an actor job's keys, activated by their events (a window job holds its open windows itself: kappa_open_windows).",
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly openWindows = new Gauge({
    name: 'kappa_open_windows',
    help: "Windows of a task open (one per key and window: fired or not, not yet purged), in memory or spilled: what a window job's state holds.",
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly spilledWindows = new Gauge({
    name: 'kappa_spilled_windows',
    help: 'Open windows of a task spilled from memory to its scratch RocksDB (past --window-memory-rows); read back when an event or the watermark needs them.',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly stateBytes = new Gauge({
    name: 'kappa_state_bytes',
    help: "Size of a task's RocksDB state (SST files plus memtables), as estimated by RocksDB.",
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly taskRestarts = new Counter({
    name: 'kappa_task_restarts_total',
    help: 'Tasks restarted after a failure.',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly taskFailures = new Counter({
    name: 'kappa_task_failures_total',
    help: 'Task failures, each retried with back-off, by reason: state-write (the local RocksDB refused a write, e.g. a full disk), checkpoint (a checkpoint upload, commit or download failed, e.g. a full JetStream store), fenced (a higher epoch owns the checkpoint), start (sinks or stream not reachable), other.',
    labelNames: ['job', 'version', 'partition', 'reason'] as const,
    registers: [this.registry],
  });
  readonly stateRestores = new Counter({
    name: 'kappa_state_restores_total',
    help: 'Task state opened at a (re)start, by source: local (the disk held the committed checkpoint), object-store (wiped and downloaded: the local copy was missing, behind, ahead or corrupt), empty (no checkpoint yet).',
    labelNames: ['job', 'version', 'partition', 'source'] as const,
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
  readonly skippedMessages = new Counter({
    name: 'kappa_skipped_messages_total',
    help: 'Stream sequences a task skipped because neither the stream nor the archive held them any more (messages deleted or purged before it read them; each range is logged).',
    labelNames: ['job', 'version', 'partition'] as const,
    registers: [this.registry],
  });
  readonly archiveSegmentsRead = new Counter({
    name: 'kappa_archive_segments_read_total',
    help: "Archive segments a task read (hybrid replay's archive phase), and bytes below.",
    labelNames: ['job', 'version'] as const,
    registers: [this.registry],
  });
  readonly archiveBytesRead = new Counter({
    name: 'kappa_archive_read_bytes_total',
    help: 'Bytes of archive segments a task read.',
    labelNames: ['job', 'version'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** A task left this process: drop its gauges, which would otherwise keep their last value forever. */
  removeTask(task: { job: string; version: string; partition: number; stage?: string }): void {
    const labels = { job: task.job, version: task.version, partition: partitionLabel(task.partition, task.stage) };
    for (const gauge of [
      this.lagMessages,
      this.watermarkLagSeconds,
      this.actorsActive,
      this.openWindows,
      this.spilledWindows,
      this.stateBytes,
      this.checkpointSizeBytes,
    ])
      gauge.remove(labels);
  }
}

/** The `partition` label of a task's metrics: the partition, after its stage for a route task (`route-clicks/3`). */
export function partitionLabel(partition: number, stage: string | undefined): string {
  return stage === undefined ? String(partition) : `${stage}/${partition}`;
}
