// `kappa produce <topic>`: JSON lines from a file or stdin into a topic. Bad lines (not an event,
// or a key or message past the NATS limits) are reported (stderr and a rejects file, with line
// numbers and the reason) and skipped; good lines still go in. Connecting, the topic lookup and
// the publishes are retried through a lost node or a leader election for --retry-for (shown on
// the progress line); after that it stops with one line and exit 4.
//
// `--key FIELD` is also what the topic is partitioned by: the first produce records it in the
// topic registry (when `kappa topic create --key` did not), and a produce keyed by another field
// than the one recorded is refused before it publishes anything (exit 2), since jobs keyed by the
// recorded field read the topic directly and would find the events in partitions they do not own.
import { createReadStream, statSync, type ReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { ConfigError, isRepartitionTopic } from '../../protocol/index.js';
import { connectNats } from '../../runtime/index.js';
import {
  DEFAULT_RETRY_FOR_MS,
  EventRejectedError,
  eventFromJsonLine,
  Producer,
  recordTopicKey,
  retryThroughElections,
  type JsonEventFields,
  type NatsWait,
} from '../../client/index.js';
import { ExitCode } from '../exit-codes.js';
import { natsConnection } from '../nats-options.js';
import { startProgress } from '../produce-progress.js';
import { RejectsFile } from '../rejects-file.js';
import { duration, positiveInt } from '../setting-values.js';
import { defineSettings, type SettingsOf } from '../settings.js';
import { CONNECT_TIMEOUT_MS } from './topic.js';

/** What to publish: this run's input, not a setting of the process. */
type ProduceInput = {
  file: string;
  key: string;
  time: string;
  rejects?: string;
  id?: string;
};

const produceSettings = defineSettings({
  maxInFlight: { flag: '--max-in-flight <n>', schema: positiveInt.default(4096), help: 'publishes awaiting their ack' },
  retryFor: {
    flag: '--retry-for <duration>',
    env: 'KAPPA_PRODUCE_RETRY_FOR',
    schema: duration.default(DEFAULT_RETRY_FOR_MS),
    help: 'how long to retry through a lost NATS node or a stream leader election before giving up with exit 4',
  },
  nats: natsConnection,
});

/** Rejected lines listed one by one on stderr; past this, only the rejects file has them. */
const MAX_LISTED_REJECTS = 100;

export function registerProduce(program: Command): void {
  const command = program
    .command('produce <topic>')
    .description('publish JSON lines as events to a topic (bad lines go to a rejects file)')
    .requiredOption('--file <file>', "JSON lines to read, '-' for stdin")
    .requiredOption('--key <field>', 'field holding the event key (dotted path for nested fields)')
    .requiredOption('--time <field>', 'field holding the event time: ms since the epoch or an ISO-8601 string')
    .option('--rejects <file>', 'where rejected lines go (default <file>.rejects, or stdin.rejects)')
    .option(
      '--id <producer-id>',
      'producer id prefixing message ids: rerunning the same input with the same id within the duplicate window stores nothing new',
    );
  produceSettings.addOptions(command).action(async (topic: string, flags: ProduceInput) => {
    process.exitCode = await produce(topic, flags, produceSettings.load(flags));
  });
}

async function produce(
  topic: string,
  flags: ProduceInput,
  settings: SettingsOf<typeof produceSettings>,
): Promise<number> {
  if (isRepartitionTopic(topic)) {
    throw new ConfigError(
      `topic ${topic} is a job version's repartition topic, written only by its route tasks; produce to a topic of your own`,
    );
  }
  const fromStdin = flags.file === '-';
  const rejectsPath = flags.rejects ?? (fromStdin ? 'stdin.rejects' : `${flags.file}.rejects`);
  const totalBytes = fromStdin ? undefined : statSync(flags.file).size;

  const run: ProduceRun = {
    rejects: new RejectsFile(rejectsPath, MAX_LISTED_REJECTS),
    producer: undefined,
    bytesRead: 0,
    published: 0,
  };
  /** What connecting and the topic lookup wait for; once publishing, the producer says. */
  let startupWait: NatsWait | undefined;
  const retry = { retryForMs: settings.retryFor, onWait: (wait: NatsWait | undefined) => (startupWait = wait) };
  const progress = startProgress(totalBytes, () => ({
    bytesRead: run.bytesRead,
    published: run.producer?.stats().acknowledged ?? 0,
    rejected: run.rejects.count,
    waiting: run.producer ? run.producer.waiting() : startupWait,
  }));
  try {
    const nc = await retryThroughElections(
      'connecting',
      () => connectNats(settings.nats, { timeout: CONNECT_TIMEOUT_MS, name: `kappa produce ${topic}` }),
      retry,
    );
    try {
      run.producer = await Producer.forTopic(nc, topic, {
        producerId: flags.id,
        maxInFlight: settings.maxInFlight,
        ...retry,
      });
      await retryThroughElections(
        `recording the key of topic ${topic}`,
        () => recordTopicKey(nc, topic, flags.key),
        retry,
      );
      const startedAt = Date.now();
      const input: Readable = fromStdin
        ? process.stdin.setEncoding('utf8')
        : createReadStream(flags.file, { encoding: 'utf8', highWaterMark: 1 << 20 });
      await publishLines(input, run.producer, run, { key: flags.key, time: flags.time }, totalBytes);
      const stats = await run.producer.close();
      progress.stop();
      const seconds = (Date.now() - startedAt) / 1000;
      const rate = Math.round(run.published / Math.max(0.001, seconds));
      console.log(
        `published ${run.published} events to ${topic} (${stats.duplicates} already stored), rejected ${run.rejects.count} lines` +
          `${run.rejects.count > 0 ? ` (see ${rejectsPath})` : ''}, ${seconds.toFixed(1)} s, ${rate} events/s`,
      );
    } finally {
      await nc.close();
    }
  } finally {
    progress.stop();
    await run.rejects.close();
  }
  return run.rejects.count > 0 ? ExitCode.rejectedInput : ExitCode.ok;
}

/** What a run has done so far, for the progress line and the summary. */
interface ProduceRun {
  rejects: RejectsFile;
  producer: Producer | undefined;
  bytesRead: number;
  published: number;
}

/** Reads the input line by line, publishing each event or rejecting the line with its reason. */
async function publishLines(
  input: Readable,
  producer: Producer,
  run: ProduceRun,
  fields: JsonEventFields,
  totalBytes: number | undefined,
): Promise<void> {
  let lineNumber = 0;
  let remainder = '';
  /** Publishes or rejects one line; false when the producer's in-flight window is full. */
  const handleLine = (line: string): boolean => {
    lineNumber++;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() === '') return true;
    const result = eventFromJsonLine(line, fields);
    if ('reason' in result) {
      run.rejects.add(lineNumber, result.reason, line);
      return true;
    }
    let room: boolean;
    try {
      room = producer.publish(result.event);
    } catch (error) {
      // A key or message past the NATS limits: this line only, like any other bad line.
      if (!(error instanceof EventRejectedError)) throw error;
      run.rejects.add(lineNumber, error.message, line);
      return true;
    }
    run.published++;
    return room;
  };
  for await (const chunk of input as AsyncIterable<string>) {
    run.bytesRead = totalBytes === undefined ? run.bytesRead + chunk.length : (input as ReadStream).bytesRead;
    const text = remainder + chunk;
    let start = 0;
    let end: number;
    while ((end = text.indexOf('\n', start)) !== -1) {
      // Back-pressure: wait only when the in-flight window is full, never per event.
      if (!handleLine(text.slice(start, end))) await producer.ready();
      start = end + 1;
    }
    remainder = text.slice(start);
  }
  if (remainder !== '' && !handleLine(remainder)) await producer.ready();
  if (totalBytes !== undefined) run.bytesRead = totalBytes;
}
