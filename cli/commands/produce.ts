// `kappa produce <topic>`: JSON lines from a file or stdin into a topic. Bad lines (not an event,
// or a key or message past the NATS limits) are reported (stderr and a rejects file, with line
// numbers and the reason) and skipped; good lines still go in.
import { createReadStream, createWriteStream, statSync, type ReadStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { ConfigError, connectNats } from '../../protocol/index.js';
import { EventRejectedError, eventFromJsonLine, Producer, type JsonEventFields } from '../../client/index.js';
import { ExitCode } from '../exit-codes.js';
import { addNatsOptions, natsSettingsFrom, type NatsFlags } from '../nats-options.js';
import { startProgress } from '../produce-progress.js';
import { CONNECT_TIMEOUT_MS } from './topic.js';

interface ProduceFlags extends NatsFlags {
  file: string;
  key: string;
  time: string;
  rejects?: string;
  id?: string;
  maxInFlight: string;
}

/** Rejected lines listed one by one on stderr; past this, only the rejects file has them. */
const MAX_LISTED_REJECTS = 100;

export function registerProduce(program: Command): void {
  addNatsOptions(
    program
      .command('produce <topic>')
      .description('publish JSON lines as events to a topic (bad lines go to a rejects file)')
      .requiredOption('--file <file>', "JSON lines to read, '-' for stdin")
      .requiredOption('--key <field>', 'field holding the event key (dotted path for nested fields)')
      .requiredOption('--time <field>', 'field holding the event time: ms since the epoch or an ISO-8601 string')
      .option('--rejects <file>', 'where rejected lines go (default <file>.rejects, or stdin.rejects)')
      .option('--id <producer-id>', 'producer id prefixing message ids: rerunning the same input with the same id within the duplicate window stores nothing new')
      .option('--max-in-flight <n>', 'publishes awaiting their ack', '4096'),
  ).action(async (topic: string, flags: ProduceFlags) => {
    process.exitCode = await produce(topic, flags);
  });
}

async function produce(topic: string, flags: ProduceFlags): Promise<number> {
  const fromStdin = flags.file === '-';
  const rejectsPath = flags.rejects ?? (fromStdin ? 'stdin.rejects' : `${flags.file}.rejects`);
  const fields: JsonEventFields = { key: flags.key, time: flags.time };
  const totalBytes = fromStdin ? undefined : statSync(flags.file).size;

  const nc = await connectNats(natsSettingsFrom(flags), { timeout: CONNECT_TIMEOUT_MS, name: `kappa produce ${topic}` });
  try {
    const producer = await Producer.forTopic(nc, topic, { producerId: flags.id, maxInFlight: Number(flags.maxInFlight) });
    const input: Readable = fromStdin
      ? process.stdin.setEncoding('utf8')
      : createReadStream(flags.file, { encoding: 'utf8', highWaterMark: 1 << 20 });
    const rejects = new RejectsFile(rejectsPath);
    let published = 0;
    let bytesRead = 0;
    const startedAt = Date.now();
    const progress = startProgress(totalBytes, () => ({ bytesRead, published: producer.stats().acknowledged, rejected: rejects.count }));
    try {
      let lineNumber = 0;
      let remainder = '';
      /** Publishes or rejects one line; false when the producer's in-flight window is full. */
      const handleLine = (line: string): boolean => {
        lineNumber++;
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line.trim() === '') return true;
        const result = eventFromJsonLine(line, fields);
        if ('reason' in result) {
          rejects.add(lineNumber, result.reason, line);
          return true;
        }
        let room: boolean;
        try {
          room = producer.publish(result.event);
        } catch (error) {
          // A key or message past the NATS limits: this line only, like any other bad line.
          if (!(error instanceof EventRejectedError)) throw error;
          rejects.add(lineNumber, error.message, line);
          return true;
        }
        published++;
        return room;
      };
      for await (const chunk of input as AsyncIterable<string>) {
        bytesRead = fromStdin ? bytesRead + chunk.length : (input as ReadStream).bytesRead;
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
      if (totalBytes !== undefined) bytesRead = totalBytes;
      const stats = await producer.close();
      progress.stop();
      const seconds = (Date.now() - startedAt) / 1000;
      const rate = Math.round(published / Math.max(0.001, seconds));
      console.log(
        `published ${published} events to ${topic} (${stats.duplicates} already stored), rejected ${rejects.count} lines` +
          `${rejects.count > 0 ? ` (see ${rejectsPath})` : ''}, ${seconds.toFixed(1)} s, ${rate} events/s`,
      );
    } finally {
      progress.stop();
      await rejects.close();
    }
    return rejects.count > 0 ? ExitCode.rejectedInput : ExitCode.ok;
  } finally {
    await nc.close();
  }
}

/** The rejects file, opened on the first rejected line: a clean run leaves no empty file behind. */
class RejectsFile {
  count = 0;
  private stream: WriteStream | undefined;
  private writeError: Error | undefined;

  constructor(private readonly path: string) {}

  add(lineNumber: number, reason: string, line: string): void {
    this.count++;
    if (this.count <= MAX_LISTED_REJECTS) console.error(`kappa: line ${lineNumber} rejected: ${reason}`);
    else if (this.count === MAX_LISTED_REJECTS + 1) console.error(`kappa: more lines rejected; see ${this.path}`);
    if (!this.stream) {
      this.stream = createWriteStream(this.path);
      this.stream.on('error', (error) => (this.writeError ??= error));
    }
    // One JSON object per line: the line number, why, and the input as read, to fix and resend.
    this.stream.write(`${JSON.stringify({ line: lineNumber, reason, input: line })}\n`);
  }

  async close(): Promise<void> {
    if (!this.stream) return;
    if (!this.writeError) {
      this.stream.end();
      await Promise.race([once(this.stream, 'finish'), once(this.stream, 'error')]).catch(() => undefined);
    }
    if (this.writeError) throw new ConfigError(`cannot write the rejects file ${this.path}: ${this.writeError.message}`);
  }
}
