// Where a task's results go after each batch: the serving table (NATS KV, default), the job's
// JetStream output subject or a topic other jobs read (topic-sink.ts), plus the dead-letter and
// late-data subjects. Every record carries a deterministic id, so a replay after a crash
// overwrites or is deduplicated.
import type { NatsConnection } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { encode } from '@msgpack/msgpack';
import { KappaError, subjects } from '../protocol/index.js';
import { TABLE_KINDS, type ServingTables, type TableKind, type TableWriter } from '../tables/index.js';
import { digestOf } from './digest.js';
import type { JobSpec } from './job.js';
import { ensureJobStreams } from './job-streams.js';
import type { BatchResult } from './task-processor.js';
import { TopicSink } from './topic-sink.js';
import type { Output } from './types.js';

/** Keeps the newest revision of each id in a batch: a window re-emitted many times is written once. */
export function newestPerId(outputs: readonly Output[]): Output[] {
  if (outputs.length < 2) return outputs.slice();
  const newest = new Map<string, Output>();
  for (const output of outputs) {
    const seen = newest.get(output.id);
    if (!seen || output.revision >= seen.revision) newest.set(output.id, output);
  }
  return [...newest.values()];
}

export class JobSinks {
  private readonly js: JetStreamClient;
  private readonly deadLetterSubject: string;
  private readonly lateSubject: string;
  private readonly outputSubject: string;

  private constructor(
    private readonly job: JobSpec,
    nc: NatsConnection,
    private readonly table: TableWriter | undefined,
    private readonly topic: TopicSink | undefined,
  ) {
    this.js = jetstream(nc);
    this.deadLetterSubject = subjects.deadLetter(job.name, job.version);
    this.lateSubject = subjects.lateData(job.name, job.version);
    this.outputSubject = subjects.output(job.name, job.version);
  }

  /** `tables` is the backend of the job's table sink (kv, postgres, redis); the caller owns it. */
  static async open(nc: NatsConnection, job: JobSpec, tables?: ServingTables): Promise<JobSinks> {
    await ensureJobStreams(nc);
    let table: TableWriter | undefined;
    if (isTableSink(job.sink)) {
      if (!tables || tables.kind !== job.sink)
        throw new KappaError(
          'JOB_INVALID',
          `job ${job.name} ${job.version} writes a ${job.sink} table but no ${job.sink} backend was given`,
        );
      table = await tables.writer(job.name, job.version);
    }
    // Opened here so a missing topic fails the start, with its name, before any event is read.
    const topic = job.sinkTopic ? await TopicSink.open(nc, job, job.sinkTopic) : undefined;
    return new JobSinks(job, nc, table, topic);
  }

  /** Writes one batch's results; resolves when the server has acknowledged all of them. */
  async write(result: BatchResult): Promise<void> {
    const pending: Promise<unknown>[] = [];
    if (result.outputs.length > 0 && this.job.sink !== 'none') {
      const outputs = newestPerId(result.outputs);
      if (this.table) pending.push(this.table.write(outputs));
      else if (this.topic) pending.push(this.topic.write(outputs));
      else for (const output of outputs) pending.push(this.publishOutput(output));
    }
    for (const late of result.late) {
      const headers = natsHeaders();
      // One late record per event at most: the event's place in the log names it.
      headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/late/${late.partition}/${late.sequence}`);
      pending.push(this.js.publish(this.lateSubject, encode(late), { headers }));
    }
    for (const letter of result.deadLetters) {
      const headers = natsHeaders();
      headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/dlq/${letter.id}`);
      headers.set('Kappa-Reason', letter.reason);
      headers.set('Kappa-Error', letter.error.replace(/[\r\n]+/g, ' ').slice(0, 1000));
      headers.set('Kappa-Partition', String(letter.partition));
      headers.set('Kappa-Sequence', String(letter.sequence));
      pending.push(this.js.publish(this.deadLetterSubject, letter.data, { headers }));
    }
    await Promise.all(pending);
  }

  /** Closes the topic sink's producers (the connection is the caller's). */
  async close(): Promise<void> {
    await this.topic?.close();
  }

  private publishOutput(output: Output): Promise<unknown> {
    const headers = natsHeaders();
    // Exactly-once effect: the server drops a re-emission of the same id and revision. Keys may
    // hold any character (a newline would break the header), so the id goes in as a digest.
    headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/out/${digestOf(output.id)}#${output.revision}`);
    return this.js.publish(this.outputSubject, encode(output), { headers });
  }
}

export function isTableSink(sink: string): sink is TableKind {
  return (TABLE_KINDS as readonly string[]).includes(sink);
}
