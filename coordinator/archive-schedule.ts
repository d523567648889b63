// The archiver's schedule on the coordinator (DESIGN "Tiers"): while this replica leads, every
// `intervalMs` the archiver seals the topics with an archive policy and applies their hot
// retention, writing under the leader's fencing token (a deposed leader's catalog writes are
// refused). It runs beside the leader loop, not on its queue: sealing a large range takes seconds
// and must not delay assignment, heartbeats or admin replies. One run at a time; the next is
// scheduled when the last ends.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Archiver, type PartitionArchiveReport } from '../archive/archiver.js';
import { ArchiveCatalog } from '../archive/catalog.js';
import { openSegmentStore } from '../archive/open-segment-store.js';
import type { ArchivePolicy, Clock } from '../protocol/index.js';
import { internalReplicas } from '../runtime/index.js';

export const DEFAULT_ARCHIVE_INTERVAL_MS = 60_000;

export interface ArchiveScheduleOptions {
  nc: NatsConnection;
  intervalMs: number;
  /** The leader's fencing token while this replica leads, else undefined. */
  fencingToken: () => number | undefined;
  clock: Clock;
  logger: Logger;
}

/** A topic's two tiers after the leader's latest archive run: what `kappa_archive_*` shows. */
export interface TopicArchiveState {
  topic: string;
  segments: number;
  bytes: number;
  events: number;
  /** Messages in the streams past the archive's end. */
  unsealedMessages: number;
  /**
   * How far the archive is behind its policy: messages of whole segments a count policy has closed
   * but that are not sealed, and seconds by which the oldest unsealed message is older than a
   * duration policy allows (0 when on time).
   */
  behindMessages: number;
  behindSeconds: number;
}

/** The per-topic archive state of one run's partition reports. Pure. */
export function topicArchiveStates(
  reports: readonly PartitionArchiveReport[],
  policyOf: (topic: string) => ArchivePolicy | undefined,
  nowMs: number,
): TopicArchiveState[] {
  const states = new Map<string, TopicArchiveState>();
  for (const report of reports) {
    let state = states.get(report.topic);
    if (!state) {
      state = {
        topic: report.topic,
        segments: 0,
        bytes: 0,
        events: 0,
        unsealedMessages: 0,
        behindMessages: 0,
        behindSeconds: 0,
      };
      states.set(report.topic, state);
    }
    const policy = policyOf(report.topic) ?? {};
    const unsealed = Math.max(0, report.streamLastSequence - report.archive.lastSequence);
    state.segments += report.archive.segments;
    state.bytes += report.archive.bytes;
    state.events += report.archive.events;
    state.unsealedMessages += unsealed;
    if (policy.afterMessages !== undefined) state.behindMessages += unsealed - (unsealed % policy.afterMessages);
    if (policy.afterMs !== undefined && report.firstUnsealedLogTimeMs !== undefined)
      state.behindSeconds = Math.max(
        state.behindSeconds,
        (nowMs - report.firstUnsealedLogTimeMs - policy.afterMs) / 1000,
      );
  }
  return [...states.values()];
}

export class ArchiveSchedule {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private archiver: Archiver | undefined;
  private latest: TopicArchiveState[] = [];

  constructor(private readonly options: ArchiveScheduleOptions) {}

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** The topics' tiers after the latest run; undefined while not leading (the metrics show none then). */
  states(): TopicArchiveState[] | undefined {
    return this.options.fencingToken() === undefined ? undefined : this.latest;
  }

  /** One pass now (tests; the timer calls it too). Nothing while not leading. */
  async runOnce(): Promise<void> {
    if (this.options.fencingToken() === undefined) return;
    const archiver = await this.openArchiver();
    const policies = new Map<string, ArchivePolicy>();
    const reports = await archiver.archivePolicyTopics(policies);
    this.latest = topicArchiveStates(reports, (topic) => policies.get(topic), this.options.clock.now());
    const sealed = reports.flatMap((report) => report.sealed);
    const purged = reports.filter((report) => report.purgedBelow !== undefined);
    if (sealed.length > 0 || purged.length > 0)
      this.options.logger.info(
        {
          segments: sealed.length,
          events: sealed.reduce((sum, segment) => sum + segment.count, 0),
          purgedPartitions: purged.length,
        },
        'archive: sealed segments and applied hot retention',
      );
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.runOnce()
        .catch((error: unknown) => this.options.logger.warn({ err: error }, 'archive run failed; next run retries'))
        .finally(() => this.schedule());
    }, this.options.intervalMs);
  }

  private async openArchiver(): Promise<Archiver> {
    const { nc, clock, fencingToken } = this.options;
    this.archiver ??= new Archiver({
      nc,
      store: await openSegmentStore(nc, { replicas: internalReplicas() }),
      catalog: await ArchiveCatalog.open(nc, { replicas: internalReplicas() }),
      clock,
      fencingToken,
    });
    return this.archiver;
  }
}
