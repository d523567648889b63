// Where a task's results go after each batch: the serving table (NATS KV, default) or the
// job's JetStream output subject, plus the dead-letter and late-data subjects. Every record
// carries a deterministic id, so a replay after a crash overwrites or is deduplicated.
import type { NatsConnection } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { encode } from '@msgpack/msgpack';
import { buckets, decodeRow, encodeRow, internalReplicas, KappaError, servingTableRowKey, streams, subjects } from '../protocol/index.js';
import type { JobSpec } from './job.js';
import type { BatchResult } from './task-processor.js';
import type { Output } from './types.js';

/**
 * How long the server remembers a message id. A re-emission after a restore repeats at most what
 * followed the last checkpoint, so this must outlast a checkpoint interval plus an outage.
 */
const OUTPUT_DEDUP_WINDOW_NS = 15 * 60 * 1_000_000_000;

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
        await jsm.streams.add({ ...stream, duplicate_window: OUTPUT_DEDUP_WINDOW_NS, num_replicas: internalReplicas() });
      } catch (error) {
        // Another worker created it first.
        if (!/already in use|exists/i.test((error as Error).message)) throw error;
      }
    }
  }
}

export async function openServingTable(nc: NatsConnection, job: string, version: string): Promise<KV> {
  return new Kvm(nc).create(buckets.servingTable(job, version), { history: 1, replicas: internalReplicas() });
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

/**
 * A serving table in NATS KV where an older revision never overwrites a newer one: every write is
 * a compare-and-set on the KV revision last seen for the row, and on a conflict (another owner,
 * a replay after a restore, a resumed zombie wrote it) the stored output revision decides.
 * A retraction is a tombstone row with its revision, for the same reason.
 */
export class RevisionGuardedTable {
  /** Per row: the KV revision of our last write and the output revision it holds. */
  private readonly known = new Map<string, { kvRevision: number; revision: number }>();

  constructor(readonly kv: KV) {}

  async write(output: Output): Promise<void> {
    const rowKey = servingTableRowKey(output.key, output.window);
    let known = this.known.get(rowKey);
    if (known !== undefined && known.revision >= output.revision) return;
    const body = encodeRow({
      key: output.key,
      start: output.window?.start,
      end: output.window?.end,
      value: output.kind === 'retract' ? null : output.value,
      revision: output.revision,
      ...(output.kind === 'retract' ? { retracted: true } : {}),
    });
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        const kvRevision = known === undefined ? await this.kv.create(rowKey, body) : await this.kv.update(rowKey, body, known.kvRevision);
        this.remember(rowKey, kvRevision, output.revision);
        return;
      } catch (error) {
        // The row is not what we last saw: read it and let the output revision decide.
        const entry = await this.kv.get(rowKey);
        if (entry === null) {
          if (known === undefined) throw error; // create failed on an absent row: not a conflict
          known = undefined;
          continue;
        }
        const stored = entry.operation === 'PUT' ? decodeRow(entry.value).revision : -1;
        if (stored >= output.revision) {
          this.remember(rowKey, entry.revision, stored);
          return;
        }
        known = { kvRevision: entry.revision, revision: stored };
      }
    }
    throw new KappaError('PUBLISH_FAILED', `serving table row ${rowKey} kept changing; output revision ${output.revision} not written`);
  }

  private remember(rowKey: string, kvRevision: number, revision: number): void {
    // Bounded: a forgotten row costs one extra read on its next write, nothing more.
    if (this.known.size >= 500_000) this.known.clear();
    this.known.set(rowKey, { kvRevision, revision });
  }
}

export class JobSinks {
  private readonly js: JetStreamClient;
  private readonly deadLetterSubject: string;
  private readonly lateSubject: string;
  private readonly outputSubject: string;

  private constructor(
    private readonly job: JobSpec,
    nc: NatsConnection,
    private readonly table: RevisionGuardedTable | undefined,
  ) {
    this.js = jetstream(nc);
    this.deadLetterSubject = subjects.deadLetter(job.name, job.version);
    this.lateSubject = subjects.lateData(job.name, job.version);
    this.outputSubject = subjects.output(job.name, job.version);
  }

  static async open(nc: NatsConnection, job: JobSpec): Promise<JobSinks> {
    await ensureJobStreams(nc);
    const table = job.sink === 'kv' ? new RevisionGuardedTable(await openServingTable(nc, job.name, job.version)) : undefined;
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
    if (this.table) return this.table.write(output);
    const headers = natsHeaders();
    // Exactly-once effect: the server drops a re-emission of the same id and revision.
    headers.set('Nats-Msg-Id', `${output.id}#${output.revision}`);
    return this.js.publish(this.outputSubject, encode(output), { headers });
  }
}
