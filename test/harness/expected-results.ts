// What a streaming run must have produced, computed independently: the topic's log is read back
// partition by partition in sequence order (the order the engine saw, whatever retries did to
// publish order) and folded by the batch reference (test/reference/batch-windows.ts). Only the
// windows a partition's final watermark has fired can be in a table; the late set is complete.
import { decode } from '@msgpack/msgpack';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  buckets,
  decodeEvent,
  liveRow,
  partitionOf,
  streams,
  subjects,
  type ServingTableRow,
} from '../../protocol/index.js';
import type { LateRecord } from '../../worker/types.js';
import { batchWindows, windowId, type ReferenceJob } from '../reference/batch-windows.js';
import { readSubject } from './stream-reader.js';

export interface LoggedEvent<V> {
  partition: number;
  sequence: number;
  value: V;
}

/** Every event of a topic, partition after partition, each in stream-sequence order. */
export async function readTopicLog<V>(
  nc: NatsConnection,
  topic: string,
  partitions: number,
): Promise<LoggedEvent<V>[]> {
  const log: LoggedEvent<V>[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    const messages = await readSubject(nc, streams.partition(topic, partition), `${topic}.${partition}.>`);
    for (const message of messages)
      log.push({ partition, sequence: message.seq, value: decodeEvent(message.data).value as V });
  }
  return log;
}

export interface ExpectedResults<V> {
  /** Fired windows: `${key}|${start}|${end}` → final value. */
  windows: Map<string, unknown>;
  late: V[];
}

export function expectedResults<V, A, R>(
  job: ReferenceJob<V, A, R>,
  log: readonly LoggedEvent<V>[],
  partitions: number,
): ExpectedResults<V> {
  const reference = batchWindows(
    job,
    log.map((event) => event.value),
    partitions,
  );
  const finalWatermark = new Map<number, number>();
  for (const event of log) {
    const previous = finalWatermark.get(event.partition) ?? -Infinity;
    finalWatermark.set(event.partition, Math.max(previous, job.time(event.value) - job.maxOutOfOrdernessMs));
  }
  const windows = new Map<string, unknown>();
  for (const [id, window] of reference.windows) {
    if (window.end - 1 <= finalWatermark.get(partitionOf(window.key, partitions))!) windows.set(id, window.value);
  }
  return { windows, late: reference.late.map((record) => record.value) };
}

/** The live rows of a job version's KV serving table, keyed like the reference. */
export async function readServingTable(
  nc: NatsConnection,
  job: string,
  version: string,
): Promise<Map<string, unknown>> {
  const table = await new Kvm(nc).open(buckets.servingTable(job, version));
  const rows = new Map<string, unknown>();
  for await (const name of await table.keys()) {
    const row: ServingTableRow | undefined = liveRow(await table.get(name));
    if (row) rows.set(windowId(row.key, row.start!, row.end!), row.value);
  }
  return rows;
}

/** Every record on a job version's late-data subject. */
export async function readLateRecords(nc: NatsConnection, job: string, version: string): Promise<LateRecord[]> {
  return (await readSubject(nc, streams.lateData, subjects.lateData(job, version))).map(
    (message) => decode(message.data) as LateRecord,
  );
}

/** The table `kappa view <job> --json` printed, keyed like the reference (one JSON row per line). */
export function viewedTable(stdout: string): Map<string, unknown> {
  return new Map(
    stdout
      .trim()
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as { key: string; start: number; end: number; value: unknown })
      .map((row) => [windowId(row.key, row.start, row.end), row.value] as const),
  );
}
