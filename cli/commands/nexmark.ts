// `kappa nexmark generate`: the deterministic Nexmark events (client/nexmark/generator.ts) into
// the topics nexmark-person, nexmark-auction and nexmark-bid, and/or a JSON lines file. The topics
// are created when missing with the key they are partitioned by recorded (person and auction: `id`,
// bid: `auction`), so jobs keyed by those fields read them directly; each event is published
// keyed by that field, pipelined (waiting only when a producer's in-flight window is full).
import { once } from 'node:events';
import type { WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Command } from 'commander';
import { z } from 'zod';
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError } from '../../protocol/index.js';
import { connectNats } from '../../runtime/index.js';
import {
  createTopic,
  DEFAULT_RETRY_FOR_MS,
  Producer,
  retryThroughElections,
  type NatsWait,
  type RetryOptions,
} from '../../client/index.js';
import {
  generateNexmark,
  nexmarkKey,
  NEXMARK_TOPICS,
  type NexmarkEvent,
  type NexmarkOptions,
} from '../../client/nexmark/generator.js';
import { ExitCode } from '../exit-codes.js';
import { natsConnection } from '../nats-options.js';
import { startProgress } from '../produce-progress.js';
import { duration, positiveInt } from '../setting-values.js';
import { defineSettings, type SettingsOf } from '../settings.js';
import { CONNECT_TIMEOUT_MS } from './topic.js';
import { runNexmark, runSettings, type GenerateInto, type RunSettings } from './nexmark-run.js';

type EventType = NexmarkEvent['type'];
const EVENT_TYPES: readonly EventType[] = ['person', 'auction', 'bid'];

/** The field each topic is partitioned by: what `nexmarkKey` takes, as `kappa produce --key` names it. */
const KEY_FIELDS: Record<EventType, string> = { person: 'id', auction: 'id', bid: 'auction' };

/** Three topics: a few partitions each suit a local cluster; 64 (a topic's default) would be 192 streams. */
const DEFAULT_NEXMARK_PARTITIONS = 8;

const generateSettings = defineSettings({
  events: { flag: '--events <n>', schema: positiveInt, help: 'how many events to generate' },
  seed: { flag: '--seed <n>', schema: z.coerce.number().int().default(1), help: 'same seed, same events' },
  rate: {
    flag: '--rate <events-per-second>',
    schema: z.coerce.number().positive().default(1000),
    help: 'events per second of event time: event n is at n * 1000 / rate ms after the first',
  },
  outOfOrderness: {
    flag: '--out-of-orderness <duration>',
    schema: duration.default(500),
    help: 'each event is up to this much earlier than its nominal time; a watermark bound at least this large makes no event late',
  },
  partitions: {
    flag: '--partitions <n>',
    schema: positiveInt.default(DEFAULT_NEXMARK_PARTITIONS),
    help: 'partitions of each topic created (an existing topic must have as many)',
  },
  file: { flag: '--file <file>', schema: z.string().optional(), help: 'also write the events as JSON lines' },
  maxInFlight: {
    flag: '--max-in-flight <n>',
    schema: positiveInt.default(4096),
    help: 'publishes awaiting their ack, per topic',
  },
  retryFor: {
    flag: '--retry-for <duration>',
    env: 'KAPPA_PRODUCE_RETRY_FOR',
    schema: duration.default(DEFAULT_RETRY_FOR_MS),
    help: 'how long to retry through a lost NATS node or a stream leader election before giving up with exit 4',
  },
  nats: natsConnection,
});

type GenerateSettings = SettingsOf<typeof generateSettings>;

export function registerNexmark(program: Command): void {
  const nexmark = program.command('nexmark').description('the Nexmark benchmark: persons, auctions and bids');
  const generate = nexmark
    .command('generate')
    .description(
      `generate Nexmark events into the topics ${Object.values(NEXMARK_TOPICS).join(', ')} (created when missing) and/or a JSON lines file`,
    )
    .option('--no-publish', 'do not publish (with --file: only write the file)');
  generateSettings.addOptions(generate);
  generate.options.find((option) => option.long === '--events')!.makeOptionMandatory();
  generate.action(async (flags: Record<string, unknown>) => {
    process.exitCode = await generateEvents(generateSettings.load(flags), flags.publish !== false);
  });
  const run = nexmark
    .command('run')
    .description(
      'run Nexmark queries on a local cluster (own nats-server, coordinator, workers) from earliest to caught up, each checked against DuckDB running its SQL',
    );
  runSettings.addOptions(run).action(async (flags: Record<string, unknown>) => {
    const settings = runSettings.load(flags);
    process.exitCode = await runNexmark(settings, generateIntoCluster(settings));
  });
}

/** What `kappa nexmark run` generates: `kappa nexmark generate --events N --seed S` into its cluster, with --file. */
export function generateIntoCluster(settings: Pick<RunSettings, 'events' | 'seed'>): GenerateInto {
  return async (url, file, partitions) => {
    const generate = generateSettings.load({
      events: settings.events,
      seed: settings.seed,
      partitions,
      file,
      nats: url,
    });
    await generateEvents(generate, true);
  };
}

/** What a run has done so far, for the progress line. */
interface GenerateRun {
  generated: number;
  producers: Partial<Record<EventType, Producer>>;
  startupWait: NatsWait | undefined;
}

async function generateEvents(settings: GenerateSettings, publish: boolean): Promise<number> {
  if (!publish && settings.file === undefined) {
    throw new ConfigError('--no-publish without --file would generate events and keep none; give --file <file>');
  }
  const options: NexmarkOptions = {
    events: settings.events,
    seed: settings.seed,
    rate: settings.rate,
    outOfOrdernessMs: settings.outOfOrderness,
  };
  const run: GenerateRun = { generated: 0, producers: {}, startupWait: undefined };
  const retry: RetryOptions = { retryForMs: settings.retryFor, onWait: (wait) => (run.startupWait = wait) };
  // The bar counts events generated of those asked for (the "bytes" of `kappa produce`'s input).
  const progress = startProgress(settings.events, () => ({
    bytesRead: run.generated,
    published: EVENT_TYPES.reduce((sum, type) => sum + (run.producers[type]?.stats().acknowledged ?? 0), 0),
    rejected: 0,
    waiting: EVENT_TYPES.map((type) => run.producers[type]?.waiting()).find(Boolean) ?? run.startupWait,
  }));
  const file = settings.file === undefined ? undefined : await JsonLinesFile.create(settings.file);
  const counts: Record<EventType, number> = { person: 0, auction: 0, bid: 0 };
  const startedAt = Date.now();
  let nc: NatsConnection | undefined;
  try {
    if (publish) {
      nc = await retryThroughElections(
        'connecting',
        () => connectNats(settings.nats, { timeout: CONNECT_TIMEOUT_MS, name: 'kappa nexmark generate' }),
        retry,
      );
      for (const type of EVENT_TYPES) run.producers[type] = await openTopic(nc, type, settings, retry);
    }
    for (const event of generateNexmark(options)) {
      counts[event.type]++;
      run.generated++;
      const producer = run.producers[event.type];
      // Back-pressure: wait only when a producer's in-flight window is full, never per event.
      if (producer && !producer.publish({ key: nexmarkKey(event), time: event.dateTime, value: event })) {
        await producer.ready();
      }
      if (file && !file.write(event)) await file.drained();
    }
    for (const type of EVENT_TYPES) await run.producers[type]?.close();
    await file?.close();
    progress.stop();
    const seconds = (Date.now() - startedAt) / 1000;
    const rate = Math.round(run.generated / Math.max(0.001, seconds));
    const perType = EVENT_TYPES.map((type) => `${counts[type]} ${type}s`).join(', ');
    const where = [
      ...(publish ? [`published to ${EVENT_TYPES.map((type) => NEXMARK_TOPICS[type]).join(', ')}`] : []),
      ...(settings.file === undefined ? [] : [`written to ${settings.file}`]),
    ].join(' and ');
    console.log(
      `generated ${run.generated} events (${perType}, seed ${settings.seed}), ${where}, ${seconds.toFixed(1)} s, ${rate} events/s`,
    );
  } finally {
    progress.stop();
    file?.destroy();
    await nc?.close();
  }
  return ExitCode.ok;
}

/** Creates the type's topic when missing (recording its key field) and a producer for it. */
async function openTopic(
  nc: NatsConnection,
  type: EventType,
  settings: GenerateSettings,
  retry: RetryOptions,
): Promise<Producer> {
  const topic = NEXMARK_TOPICS[type];
  await retryThroughElections(
    `creating topic ${topic}`,
    () => createTopic(nc, { name: topic, partitions: settings.partitions, key: KEY_FIELDS[type] }),
    retry,
  );
  return Producer.forTopic(nc, topic, { maxInFlight: settings.maxInFlight, ...retry });
}

/** The --file output: opened before generating (a bad path fails at once), write errors kept for the next await. */
class JsonLinesFile {
  private error: Error | undefined;

  private constructor(private readonly stream: WriteStream) {
    stream.on('error', (error) => (this.error ??= error));
  }

  static async create(path: string): Promise<JsonLinesFile> {
    let handle;
    try {
      handle = await open(path, 'w');
    } catch (error) {
      throw new ConfigError(`--file ${path}: cannot write it (${(error as Error).message})`, { cause: error });
    }
    return new JsonLinesFile(handle.createWriteStream({ highWaterMark: 1 << 20 }));
  }

  /** False when the buffer is full: then await drained(). */
  write(event: NexmarkEvent): boolean {
    if (this.error) throw this.error;
    return this.stream.write(JSON.stringify(event) + '\n');
  }

  async drained(): Promise<void> {
    if (this.error) throw this.error;
    await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    if (this.error) throw this.error;
    this.stream.end();
    await once(this.stream, 'finish');
  }

  destroy(): void {
    if (!this.stream.closed) this.stream.destroy();
  }
}
