// `kappa topic create|list|describe|archive|delete`.
import { jetstreamManager } from '@nats-io/jetstream';
import type { Command } from 'commander';
import type { NatsConnection } from '@nats-io/transport-node';
import { Archiver } from '../../archive/archiver.js';
import { ArchiveCatalog, archiveSummary, type ArchiveSummary } from '../../archive/catalog.js';
import { openSegmentStore } from '../../archive/open-segment-store.js';
import {
  ConfigError,
  decodeEvent,
  describeArchivePolicy,
  parseArchiveAfter,
  parseHotRetention,
  streams,
  systemClock,
  type ArchivePolicy,
} from '../../protocol/index.js';
import { connectNats } from '../../runtime/index.js';
import {
  createTopic,
  deleteTopic,
  describeTopic,
  listTopics,
  DEFAULT_PARTITIONS,
  DEFAULT_REPLICAS,
  type TopicDescription,
} from '../../client/index.js';
import { addNatsOptions, natsSettingsFrom, type NatsFlags } from '../nats-options.js';

/** A command fails within this when no server answers, instead of waiting the client's 20 s default. */
export const CONNECT_TIMEOUT_MS = 3_000;

export function registerTopic(program: Command): void {
  const topic = program.command('topic').description('create, list, describe and delete topics');

  addNatsOptions(
    topic
      .command('create <name>')
      .description('create a topic of P partitions (P is fixed for the life of the topic)')
      .option('--partitions <n>', 'partition count', String(DEFAULT_PARTITIONS))
      .option('--replicas <n>', 'replicas of each partition stream', String(DEFAULT_REPLICAS))
      .option(
        '--key <field>',
        'the field its events are partitioned by (what producers pass as --key): jobs keyed by it read the topic directly, any other key goes through a repartition stage',
      )
      .option(
        '--archive-after <count|duration>',
        'the coordinator leader seals each partition into archive segments of this many messages (100000), or the messages older than this (1h, 7d)',
      )
      .option(
        '--hot-retention <duration|bytes>',
        'the streams keep at least this much (7d, 10GB); archived ranges older than it are removed from them (default: everything stays)',
      ),
  ).action(
    async (
      name: string,
      flags: NatsFlags & {
        partitions: string;
        replicas: string;
        key?: string;
        archiveAfter?: string;
        hotRetention?: string;
      },
    ) => {
      const partitions = integerFlag('--partitions', flags.partitions);
      const replicas = integerFlag('--replicas', flags.replicas);
      const archive = archivePolicyOf(flags);
      await withNats(flags, async (nc) => {
        const created = await createTopic(nc, { name, partitions, replicas, key: flags.key, archive });
        console.log(
          `topic ${created.name}: ${created.partitions} partitions, ${created.replicas} replica(s)${keyNote(created.key)}${created.archive ? `, ${describeArchivePolicy(created.archive)}` : ''}`,
        );
      });
    },
  );

  addNatsOptions(topic.command('list').description('list topics').option('--json', 'print JSON')).action(
    async (flags: NatsFlags & { json?: boolean }) => {
      await withNats(flags, async (nc) => {
        const topics = await listTopics(nc);
        if (flags.json) return console.log(JSON.stringify(topics, null, 2));
        printTable(
          ['topic', 'partitions', 'replicas', 'key', 'created', ''],
          topics.map((t) => [
            t.name,
            String(t.partitions),
            String(t.replicas),
            t.key ?? '-',
            t.createdAt,
            t.internal ? INTERNAL_NOTE : '',
          ]),
          new Set([3, 5]),
        );
      });
    },
  );

  addNatsOptions(
    topic
      .command('describe <name>')
      .description('per-partition sequences and message counts, plus totals')
      .option('--json', 'print JSON'),
  ).action(async (name: string, flags: NatsFlags & { json?: boolean }) => {
    await withNats(flags, async (nc) => {
      const description = await describeTopic(nc, name);
      const tiers = await tiersOf(nc, description);
      if (flags.json) return console.log(JSON.stringify({ ...description, tiers }, null, 2));
      printDescription(description, tiers);
    });
  });

  addNatsOptions(
    topic
      .command('archive <name>')
      .description(
        "seal now: every message the topic's streams hold goes into archive segments (of --archive-after messages for a count policy), then its hot retention applies",
      ),
  ).action(async (name: string, flags: NatsFlags) => {
    await withNats(flags, async (nc) => {
      const archiver = new Archiver({
        nc,
        store: await openSegmentStore(nc),
        catalog: await ArchiveCatalog.open(nc),
        clock: systemClock,
      });
      const reports = await archiver.archiveTopic(name, { force: true });
      const sealed = reports.flatMap((report) => report.sealed);
      const events = sealed.reduce((sum, segment) => sum + segment.count, 0);
      const purged = reports.filter((report) => report.purgedBelow !== undefined);
      console.log(
        `topic ${name}: ${sealed.length} segment(s) sealed, ${events} events` +
          (purged.length > 0 ? `; hot retention trimmed ${purged.length} partition stream(s)` : ''),
      );
    });
  });

  addNatsOptions(topic.command('delete <name>').description('delete a topic and all its events')).action(
    async (name: string, flags: NatsFlags) => {
      await withNats(flags, async (nc) => {
        await deleteTopic(nc, name);
        console.log(`topic ${name} deleted`);
      });
    },
  );
}

async function withNats(flags: NatsFlags, work: (nc: NatsConnection) => Promise<void>): Promise<void> {
  const nc = await connectNats(natsSettingsFrom(flags), { timeout: CONNECT_TIMEOUT_MS, name: 'kappa topic' });
  try {
    await work(nc);
  } finally {
    await nc.close();
  }
}

function integerFlag(flag: string, raw: string): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1)
    throw new ConfigError(`${flag} must be a positive integer, found ${JSON.stringify(raw)}`);
  return value;
}

/** How list and describe mark a job version's repartition topic. */
const INTERNAL_NOTE = 'internal (repartition topic)';

function keyNote(key: string | undefined): string {
  return key === undefined ? ', key not recorded' : `, partitioned by '${key}'`;
}

/** `--archive-after` and `--hot-retention` as a policy, or undefined when neither is given. */
function archivePolicyOf(flags: { archiveAfter?: string; hotRetention?: string }): ArchivePolicy | undefined {
  if (flags.archiveAfter === undefined && flags.hotRetention === undefined) return undefined;
  return {
    ...(flags.archiveAfter === undefined ? {} : parseArchiveAfter(flags.archiveAfter)),
    ...(flags.hotRetention === undefined ? {} : parseHotRetention(flags.hotRetention)),
  };
}

/** Both tiers of one partition: the stream's event-time ends and the archive's summary. */
interface PartitionTiers {
  partition: number;
  /** Event times of the stream's first and last messages (null when empty or not envelopes). */
  hotFirstEventTimeMs: number | null;
  hotLastEventTimeMs: number | null;
  archive: ArchiveSummary;
}

async function tiersOf(nc: NatsConnection, description: TopicDescription): Promise<PartitionTiers[]> {
  const jsm = await jetstreamManager(nc);
  const catalog = await ArchiveCatalog.open(nc);
  const eventTimeAt = async (stream: string, seq: number): Promise<number | null> => {
    try {
      const message = await jsm.streams.getMessage(stream, { seq });
      return message ? decodeEvent(message.data).time : null;
    } catch {
      return null;
    }
  };
  return Promise.all(
    description.partitionStates.map(async (state) => {
      const stream = streams.partition(description.name, state.partition);
      const empty = state.messages === 0;
      return {
        partition: state.partition,
        hotFirstEventTimeMs: empty ? null : await eventTimeAt(stream, state.firstSequence),
        hotLastEventTimeMs: empty ? null : await eventTimeAt(stream, state.lastSequence),
        archive: archiveSummary(await catalog.read(description.name, state.partition)),
      };
    }),
  );
}

function printDescription(description: TopicDescription, tiers: readonly PartitionTiers[]): void {
  console.log(
    `topic ${description.name}: ${description.partitions} partitions, ${description.replicas} replica(s)${keyNote(description.key)}, created ${description.createdAt}${description.internal ? `, ${INTERNAL_NOTE}` : ''}`,
  );
  console.log(describeArchivePolicy(description.archive));
  const time = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());
  const range = (first: number, last: number) => (first === 0 ? '-' : `${first}-${last}`);
  const total = { events: 0, segments: 0, bytes: 0 };
  const rows = description.partitionStates.map((p, index) => {
    const tier = tiers[index]!;
    total.events += tier.archive.events;
    total.segments += tier.archive.segments;
    total.bytes += tier.archive.bytes;
    return [
      String(p.partition),
      range(p.firstSequence, p.lastSequence),
      String(p.messages),
      String(p.bytes),
      `${time(tier.hotFirstEventTimeMs)} .. ${time(tier.hotLastEventTimeMs)}`,
      range(tier.archive.firstSequence, tier.archive.lastSequence),
      String(tier.archive.events),
      String(tier.archive.segments),
      String(tier.archive.bytes),
      `${time(tier.archive.minEventTimeMs)} .. ${time(tier.archive.maxEventTimeMs)}`,
    ];
  });
  rows.push([
    'total',
    '',
    String(description.totals.messages),
    String(description.totals.bytes),
    '',
    '',
    String(total.events),
    String(total.segments),
    String(total.bytes),
    '',
  ]);
  printTable(
    [
      'partition',
      'hot seqs',
      'messages',
      'bytes',
      'hot event times (first .. last message)',
      'archived seqs',
      'events',
      'segments',
      'bytes',
      'archived event times (min .. max)',
    ],
    rows,
    new Set([4, 9]),
  );
}

/** Numbers right-aligned; the first column and those in `textColumns` left-aligned. */
function printTable(header: string[], rows: string[][], textColumns: ReadonlySet<number> = new Set()): void {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) =>
        column === 0 || textColumns.has(column) ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!),
      )
      .join('  ')
      .trimEnd();
  console.log(line(header));
  for (const row of rows) console.log(line(row));
}
