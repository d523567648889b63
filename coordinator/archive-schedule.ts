// The archiver's schedule on the coordinator (DESIGN "Tiers"): while this replica leads, every
// `intervalMs` the archiver seals the topics with an archive policy and applies their hot
// retention, writing under the leader's fencing token (a deposed leader's catalog writes are
// refused). It runs beside the leader loop, not on its queue: sealing a large range takes seconds
// and must not delay assignment, heartbeats or admin replies. One run at a time; the next is
// scheduled when the last ends.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Archiver } from '../archive/archiver.js';
import { ArchiveCatalog } from '../archive/catalog.js';
import { openSegmentStore } from '../archive/open-segment-store.js';
import type { Clock } from '../protocol/index.js';
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

export class ArchiveSchedule {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  private archiver: Archiver | undefined;

  constructor(private readonly options: ArchiveScheduleOptions) {}

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One pass now (tests; the timer calls it too). Nothing while not leading. */
  async runOnce(): Promise<void> {
    if (this.options.fencingToken() === undefined) return;
    const archiver = await this.openArchiver();
    const reports = await archiver.archivePolicyTopics();
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
