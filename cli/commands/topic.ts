// `kappa topic create|list|describe|delete`.
import type { Command } from 'commander';
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError } from '../../protocol/index.js';
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
      ),
  ).action(async (name: string, flags: NatsFlags & { partitions: string; replicas: string; key?: string }) => {
    const partitions = integerFlag('--partitions', flags.partitions);
    const replicas = integerFlag('--replicas', flags.replicas);
    await withNats(flags, async (nc) => {
      const created = await createTopic(nc, { name, partitions, replicas, key: flags.key });
      console.log(
        `topic ${created.name}: ${created.partitions} partitions, ${created.replicas} replica(s)${keyNote(created.key)}`,
      );
    });
  });

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
      if (flags.json) return console.log(JSON.stringify(description, null, 2));
      printDescription(description);
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

function printDescription(description: TopicDescription): void {
  console.log(
    `topic ${description.name}: ${description.partitions} partitions, ${description.replicas} replica(s)${keyNote(description.key)}, created ${description.createdAt}${description.internal ? `, ${INTERNAL_NOTE}` : ''}`,
  );
  const rows = description.partitionStates.map((p) => [
    String(p.partition),
    p.stream,
    String(p.firstSequence),
    String(p.lastSequence),
    String(p.messages),
    String(p.bytes),
  ]);
  rows.push(['total', '', '', '', String(description.totals.messages), String(description.totals.bytes)]);
  printTable(['partition', 'stream', 'first seq', 'last seq', 'messages', 'bytes'], rows);
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
