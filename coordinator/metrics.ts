// Prometheus metrics of a coordinator replica (STYLE: kappa_<noun>_<unit>). The cluster-wide
// gauges (tasks per worker, per version, replay progress) are set by the leader only; a
// follower clears them, so summing over replicas never counts a task twice.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { WorkerId } from './assignment.js';
import type { TaskRecord } from './cluster-state.js';
import type { JobStreamState } from './job-stream-usage.js';
import type { TopicArchiveState } from './archive-schedule.js';
import type { LatestDiff } from './version-diff.js';
import { versionTaskStates, type VersionProgress } from './version-progress.js';

export class CoordinatorMetrics {
  readonly registry = new Registry();
  readonly leader = new Gauge({
    name: 'kappa_coordinator_leader',
    help: '1 while this replica is the leader, else 0',
    registers: [this.registry],
  });
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
  readonly workers = new Gauge({
    name: 'kappa_workers',
    help: 'Live workers known to this replica',
    registers: [this.registry],
  });
  readonly versionTasks = new Gauge({
    name: 'kappa_version_tasks',
    help: 'Tasks of a job version by state, as the leader sees them: waiting (no worker carries it), assigning (not yet reported at its epoch), then the state its worker reports (restoring, running, releasing, failed)',
    labelNames: ['job', 'version', 'state'] as const,
    registers: [this.registry],
  });
  readonly versionProgress = new Gauge({
    name: 'kappa_version_progress_ratio',
    help: 'Replay progress of a job version: sum over its partitions of the sequence processed / the stream last sequence; 1 when caught up',
    labelNames: ['job', 'version'] as const,
    registers: [this.registry],
  });
  readonly versionLag = new Gauge({
    name: 'kappa_version_lag_messages',
    help: 'Messages of a job version’s topics not yet processed, summed over the partitions of every stage (0 when caught up)',
    labelNames: ['job', 'version'] as const,
    registers: [this.registry],
  });
  readonly stageLag = new Gauge({
    name: 'kappa_stage_lag_messages',
    help: 'Messages not yet processed by one stage of a job version, summed over its partitions: a route stage (route-<source>) against its source topic, the keyed stage (keyed) against the repartition topic, or the topic it reads directly',
    labelNames: ['job', 'version', 'stage'] as const,
    registers: [this.registry],
  });

  // The shared dead-letter, late-data and output streams (coordinator/job-stream-usage.ts), read
  // from JetStream at scrape time by the leader.
  private readJobStreams: () => Promise<JobStreamState[] | undefined> | undefined = () => undefined;
  readonly jobStreamMessages = this.jobStreamGauge(
    'kappa_job_stream_messages',
    'Messages held by a shared job stream (KAPPA_DLQ, KAPPA_LATE, KAPPA_OUT)',
    (state) => state.messages,
  );
  readonly jobStreamBytes = this.jobStreamGauge(
    'kappa_job_stream_bytes',
    'Bytes held by a shared job stream',
    (state) => state.bytes,
  );
  readonly jobStreamFirstSequence = this.jobStreamGauge(
    'kappa_job_stream_first_sequence',
    'First sequence a shared job stream still holds',
    (state) => state.firstSequence,
  );
  readonly jobStreamDiscarded = this.jobStreamGauge(
    'kappa_job_stream_discarded_messages',
    'Messages a shared job stream stored and no longer holds (last sequence - messages): removed by its age and size limits, or by an operator purge; Kappa deletes none. Rises while records are being lost',
    (state) => state.discardedMessages,
  );
  readonly jobStreamLimitBytes = this.jobStreamGauge(
    'kappa_job_stream_limit_bytes',
    'Size bound of a shared job stream (0: none); the oldest messages go past it',
    (state) => state.maxBytes,
  );
  readonly jobStreamLimitAge = this.jobStreamGauge(
    'kappa_job_stream_limit_age_seconds',
    'Age bound of a shared job stream (0: none)',
    (state) => state.maxAgeSeconds,
  );

  // The cold tier of each topic with an archive policy after the leader's latest archive run
  // (archive-schedule.ts); a follower shows none.
  private readArchive: () => readonly TopicArchiveState[] | undefined = () => undefined;
  readonly archiveSegments = this.archiveGauge(
    'kappa_archive_segments',
    "Segments in a topic's archive (all partitions)",
    (state) => state.segments,
  );
  readonly archiveBytes = this.archiveGauge(
    'kappa_archive_bytes',
    "Bytes of a topic's archive segments",
    (state) => state.bytes,
  );
  readonly archiveEvents = this.archiveGauge(
    'kappa_archive_events',
    "Events in a topic's archive",
    (state) => state.events,
  );
  readonly archiveUnsealed = this.archiveGauge(
    'kappa_archive_unsealed_messages',
    "Messages of a topic's streams past its archive's end",
    (state) => state.unsealedMessages,
  );
  readonly archiveBehindMessages = this.archiveGauge(
    'kappa_archive_behind_policy_messages',
    "Messages of whole segments a topic's count policy (--archive-after N) has closed that are not sealed yet: the archiver's lag",
    (state) => state.behindMessages,
  );
  readonly archiveBehindSeconds = this.archiveGauge(
    'kappa_archive_behind_policy_seconds',
    "How much older than a duration policy (--archive-after 1h) allows the oldest unsealed message is: the archiver's lag",
    (state) => state.behindSeconds,
  );

  // The latest diff of each `--max-changed` replay against the served version (version-diff.ts),
  // read at scrape time from the leader's watch.
  private readVersionDiffs: () => Iterable<LatestDiff> | undefined = () => undefined;
  readonly versionDiffRows: Gauge<'job' | 'version' | 'kind'> = new Gauge({
    name: 'kappa_version_diff_rows',
    help: "Rows of a replaying job version's latest diff against the served version, over the rows both have made final, by kind: same, changed, only_from (only in the served version), only_to (only in this one)",
    labelNames: ['job', 'version', 'kind'] as const,
    registers: [this.registry],
    collect: () => {
      this.versionDiffRows.reset();
      for (const { job, version, summary } of this.readVersionDiffs() ?? []) {
        const labels = { job, version };
        this.versionDiffRows.set({ ...labels, kind: 'same' }, summary.same);
        this.versionDiffRows.set({ ...labels, kind: 'changed' }, summary.changed);
        this.versionDiffRows.set({ ...labels, kind: 'only_from' }, summary.onlyInFrom);
        this.versionDiffRows.set({ ...labels, kind: 'only_to' }, summary.onlyInTo);
      }
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Where `kappa_version_diff_rows` comes from: undefined on a follower, which then shows none. */
  observeVersionDiffs(read: () => Iterable<LatestDiff> | undefined): void {
    this.readVersionDiffs = read;
  }

  /** Where the job stream gauges come from: `read` answers undefined on a follower, which then shows none. */
  observeJobStreams(read: () => Promise<JobStreamState[] | undefined> | undefined): void {
    this.readJobStreams = read;
  }

  /** Where the archive gauges come from: undefined on a follower, which then shows none. */
  observeArchive(read: () => readonly TopicArchiveState[] | undefined): void {
    this.readArchive = read;
  }

  private archiveGauge(name: string, help: string, value: (state: TopicArchiveState) => number): Gauge<'topic'> {
    const gauge: Gauge<'topic'> = new Gauge({
      name,
      help,
      labelNames: ['topic'] as const,
      registers: [this.registry],
      collect: () => {
        gauge.reset();
        for (const state of this.readArchive() ?? []) gauge.set({ topic: state.topic }, value(state));
      },
    });
    return gauge;
  }

  private jobStreamGauge(name: string, help: string, value: (state: JobStreamState) => number): Gauge<'stream'> {
    const gauge: Gauge<'stream'> = new Gauge({
      name,
      help,
      labelNames: ['stream'] as const,
      registers: [this.registry],
      collect: async () => {
        const states = await this.readJobStreams();
        gauge.reset();
        for (const state of states ?? []) gauge.set({ stream: state.stream }, value(state));
      },
    });
    return gauge;
  }

  /** The leader's view of who holds what: tasks per live worker (0 for an idle one). */
  recordAssignments(liveWorkers: readonly WorkerId[], tasks: Iterable<TaskRecord>): void {
    this.tasksAssigned.reset();
    for (const worker of liveWorkers) this.tasksAssigned.set({ worker }, 0);
    for (const record of tasks) if (record.worker !== null) this.tasksAssigned.inc({ worker: record.worker });
  }

  /** Replaces the per-version gauges with these versions' (stopped versions disappear). */
  recordVersions(versions: readonly VersionProgress[]): void {
    this.versionTasks.reset();
    this.versionProgress.reset();
    this.versionLag.reset();
    this.stageLag.reset();
    for (const progress of versions) {
      const labels = { job: progress.job, version: progress.version };
      for (const state of versionTaskStates) this.versionTasks.set({ ...labels, state }, progress.tasks[state]);
      if (progress.ratio !== undefined) this.versionProgress.set(labels, progress.ratio);
      if (progress.lagMessages !== undefined) this.versionLag.set(labels, progress.lagMessages);
      for (const stage of progress.stages) {
        if (stage.lagMessages !== undefined)
          this.stageLag.set({ ...labels, stage: stage.stage ?? 'keyed' }, stage.lagMessages);
      }
    }
  }

  /** A follower shows no cluster-wide view (the leader does). */
  clearLeaderView(): void {
    this.tasksAssigned.reset();
    this.recordVersions([]);
  }
}
