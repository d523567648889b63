// Where a task's results go after each batch: the serving table (NATS KV, default), the job's
// JetStream output subject or a topic other jobs read (topic-sink.ts), plus the dead-letter and
// late-data subjects. Every record carries a deterministic id, so a replay after a crash
// overwrites or is deduplicated.
import { MsgHdrsImpl, type NatsConnection } from '@nats-io/transport-node';
import { BatchPublisher, type BatchMessage } from '../client/publish-batch.js';
import { encode } from '@msgpack/msgpack';
import { KappaError, subjects } from '../protocol/index.js';
import { TABLE_KINDS, type ServingTables, type TableKind, type TableWriter } from '../tables/index.js';
import { digestOf } from './digest.js';
import type { JobSpec } from './job.js';
import { ensureJobStreams } from './job-streams.js';
import type { BatchResult } from './task-processor.js';
import { TopicSink } from './topic-sink.js';
import { positionOf, type Output } from './types.js';

/** What JobSinks.write takes: a batch's results, or several batches' (worker/task-outputs.ts). */
export type SinkWrite = Pick<BatchResult, 'outputs' | 'late' | 'deadLetters'> & {
  /** The outputs hold one output per id, its newest (TaskOutputs coalesced them): no second pass. */
  newestPerId?: boolean;
};

/** Keeps the newest revision of each id in a batch: a table row re-emitted many times is written once. */
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
  /** Late records, dead letters and stream outputs go out through it, a batch at a time. */
  private readonly publisher: BatchPublisher;
  private readonly deadLetterSubject: string;
  private readonly lateSubject: string;
  private readonly outputSubject: string;

  private constructor(
    private readonly job: JobSpec,
    private readonly nc: NatsConnection,
    private readonly table: TableWriter | undefined,
    private readonly topic: TopicSink | undefined,
  ) {
    this.publisher = new BatchPublisher(nc);
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

  /**
   * Writes results (one batch's, or several batches' coalesced by TaskOutputs); resolves when the
   * server has acknowledged all of them. Outputs to the table go as one table write; late
   * records, dead letters and stream outputs as one pipelined batch of publishes.
   */
  async write(result: SinkWrite): Promise<void> {
    const pending: Promise<unknown>[] = [];
    const records: BatchMessage[] = [];
    if (result.outputs.length > 0 && this.job.sink !== 'none') {
      // A table keeps only a row's newest revision, so only that is written. A stream or a topic
      // is a changelog its readers consume record by record (q0's pass-through emits every event
      // to its key's one row): every revision goes out, in emission order, so what they read
      // depends on the events alone, never on where a batch ended.
      if (this.table) pending.push(this.table.write(result.newestPerId ? result.outputs : newestPerId(result.outputs)));
      else if (this.topic) pending.push(this.topic.write(result.outputs));
      else for (const output of result.outputs) records.push(this.outputRecord(output));
    }
    const maxPayload = this.nc.info?.max_payload;
    for (const late of result.late) {
      const headers = new MsgHdrsImpl();
      // One late record per event at most: the event's place in the log names it.
      headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/late/${late.partition}/${positionOf(late)}`);
      let payload = encode(late);
      if (!fits(payload, headers, maxPayload)) {
        // The value is what makes it large; the record says how large and where the event is.
        payload = encode({ ...late, value: null, valueOmittedBytes: payload.length });
      }
      records.push({ subject: this.lateSubject, payload, headers });
    }
    for (const letter of result.deadLetters) {
      const headers = new MsgHdrsImpl();
      headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/dlq/${letter.id}`);
      headers.set('Kappa-Reason', letter.reason);
      headers.set('Kappa-Error', letter.error.replace(/[\r\n]+/g, ' ').slice(0, 1000));
      headers.set('Kappa-Partition', String(letter.partition));
      headers.set('Kappa-Sequence', String(letter.sequence));
      if (letter.part !== undefined) headers.set('Kappa-Part', String(letter.part));
      let payload = letter.data;
      if (!fits(payload, headers, maxPayload)) {
        headers.set('Kappa-Omitted-Bytes', String(payload.length));
        payload = new Uint8Array(0);
      }
      records.push({ subject: this.deadLetterSubject, payload, headers });
    }
    if (records.length > 0) pending.push(this.publishRecords(records));
    await Promise.all(pending);
  }

  /** Closes the topic sink's producers and the record publisher (the connection is the caller's). */
  async close(): Promise<void> {
    this.publisher.close();
    await this.topic?.close();
  }

  private async publishRecords(records: BatchMessage[]): Promise<void> {
    const outcomes = await this.publisher.publish(records);
    outcomes.forEach((outcome, index) => {
      if (!outcome.stored)
        throw new KappaError(
          'PUBLISH_FAILED',
          `the server refused a record on ${records[index]!.subject}: ${outcome.description} (err_code ${outcome.code})`,
        );
    });
  }

  private outputRecord(output: Output): BatchMessage {
    const headers = new MsgHdrsImpl();
    // Exactly-once effect: the server drops a re-emission of the same id and revision. Keys may
    // hold any character (a newline would break the header), so the id goes in as a digest.
    headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/out/${digestOf(output.id)}#${output.revision}`);
    return { subject: this.outputSubject, payload: encode(output), headers };
  }
}

/**
 * Whether a record fits the server's max_payload with its headers. A late record or dead letter
 * of an event near the limit does not (the headers add to it), and a publish past it fails its
 * batch again on every retry: such a record goes out without the event's bytes, saying how many
 * there were; the event itself stays in its topic at the partition and sequence the record names.
 */
function fits(payload: Uint8Array, headers: MsgHdrsImpl, maxPayload: number | undefined): boolean {
  // Headers are small: only a payload near the limit needs them measured.
  if (maxPayload === undefined || payload.length + 4_096 <= maxPayload) return true;
  return payload.length + headers.encode().length <= maxPayload;
}

export function isTableSink(sink: string): sink is TableKind {
  return (TABLE_KINDS as readonly string[]).includes(sink);
}
