// Where a task's results go after each batch: the serving table (NATS KV, default) or the
// job's JetStream output subject, plus the dead-letter and late-data subjects. Every record
// carries a deterministic id, so a replay after a crash overwrites or is deduplicated.
import type { NatsConnection } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { encode } from '@msgpack/msgpack';
import { buckets, encodeRow, servingTableRowKey, streams, subjects } from '../protocol/index.js';
import type { JobSpec } from './job.js';
import type { BatchResult } from './task-processor.js';
import type { Output } from './types.js';

/** Creates the shared dead-letter, late-data and output streams if they do not exist. */
export async function ensureJobStreams(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const wanted = [
    { name: streams.deadLetter, subjects: ['kappa.dlq.>'] },
    { name: streams.lateData, subjects: ['kappa.late.>'] },
    { name: streams.output, subjects: ['kappa.out.>'] },
  ];
  for (const stream of wanted) {
    try {
      await jsm.streams.info(stream.name);
    } catch {
      try {
        await jsm.streams.add({ ...stream, duplicate_window: 120_000_000_000 });
      } catch (error) {
        // Another worker created it first.
        if (!/already in use|exists/i.test((error as Error).message)) throw error;
      }
    }
  }
}

export async function openServingTable(nc: NatsConnection, job: string, version: string): Promise<KV> {
  return new Kvm(nc).create(buckets.servingTable(job, version), { history: 1 });
}

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
    private readonly table: KV | undefined,
  ) {
    this.js = jetstream(nc);
    this.deadLetterSubject = subjects.deadLetter(job.name, job.version);
    this.lateSubject = subjects.lateData(job.name, job.version);
    this.outputSubject = subjects.output(job.name, job.version);
  }

  static async open(nc: NatsConnection, job: JobSpec): Promise<JobSinks> {
    await ensureJobStreams(nc);
    const table = job.sink === 'kv' ? await openServingTable(nc, job.name, job.version) : undefined;
    return new JobSinks(job, nc, table);
  }

  /** Writes one batch's results; resolves when the server has acknowledged all of them. */
  async write(result: BatchResult): Promise<void> {
    const pending: Promise<unknown>[] = [];
    if (result.outputs.length > 0 && this.job.sink !== 'none') {
      for (const output of newestPerId(result.outputs)) pending.push(this.writeOutput(output));
    }
    for (const late of result.late) {
      const headers = natsHeaders();
      headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/late/${late.partition}/${late.sequence}`);
      pending.push(this.js.publish(this.lateSubject, encode(late), { headers }));
    }
    for (const letter of result.deadLetters) {
      const headers = natsHeaders();
      headers.set('Nats-Msg-Id', `${this.job.name}/${this.job.version}/dlq/${letter.partition}/${letter.sequence}/${letter.reason}`);
      headers.set('Kappa-Reason', letter.reason);
      headers.set('Kappa-Error', letter.error.replace(/[\r\n]+/g, ' ').slice(0, 1000));
      headers.set('Kappa-Partition', String(letter.partition));
      headers.set('Kappa-Sequence', String(letter.sequence));
      pending.push(this.js.publish(this.deadLetterSubject, letter.data, { headers }));
    }
    await Promise.all(pending);
  }

  private writeOutput(output: Output): Promise<unknown> {
    if (this.table) {
      const rowKey = servingTableRowKey(output.key, output.window);
      if (output.kind === 'retract') return this.table.delete(rowKey);
      return this.table.put(
        rowKey,
        encodeRow({ key: output.key, start: output.window?.start, end: output.window?.end, value: output.value, revision: output.revision }),
      );
    }
    const headers = natsHeaders();
    // Exactly-once effect: the server drops a re-emission of the same id and revision.
    headers.set('Nats-Msg-Id', `${output.id}#${output.revision}`);
    return this.js.publish(this.outputSubject, encode(output), { headers });
  }
}
