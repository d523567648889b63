// The topic sink (`sink: { kind: 'topic', topic, key? }`): a job's outputs become events of a
// partitioned topic that other jobs read, which chains jobs (README "Chained jobs"). Each output
// (every revision emitted, in emission order) is one event:
//
//   envelope key   the sink key of the output (default the output's key), hashed to its partition
//                  as every producer does (FNV-1a, protocol/partition.ts)
//   event time     the window's end − 1 for a windowed output, else the actor's time (the event's
//                  or timer's time, or `emit(value, { time })`)
//   value          an OutputEvent: { id, revision, kind, key, row?, window?, time, value }
//   Nats-Msg-Id    `<job>/<version>/out/<digest(id)>#<revision>`, as the stream sink: a task that
//                  writes a batch again after a crash is deduplicated within the topic's window
//
// What a downstream job sees: every written revision of an output id is an event of its own,
// and a session window merged into a larger one arrives as a `retract` of the smaller window. A
// downstream aggregate must therefore keep the newest revision per id and drop older ones
// (`latestRevisions`, worker/latest-revisions.ts), or subtract the previous revision before
// adding the new one; summing every event would count a re-emitted window twice. A repeated
// revision (a replay past the duplicate window) is then harmless too.
//
// The sink key must be the same for every revision of an id (a function of the output's key, row
// or window): revisions of one id in different partitions reach a downstream task in no order.
// An output whose sink key is unusable (missing, empty, over the key limit) or whose event is over
// the server's max_payload fails the task with an error naming it: it is a bug in the job, and a
// new version with a fixed `sink.key` is the way out.
import { MsgHdrsImpl, type NatsConnection } from '@nats-io/transport-node';
import { Producer } from '../client/producer.js';
import { encodePublishable, EventRejectedError } from '../client/publish-limits.js';
import { TopicNotFoundError } from '../client/topics.js';
import { KappaError, messageIdOf, partitionOf } from '../protocol/index.js';
import { digestOf } from './digest.js';
import type { Output, Window } from './types.js';

/** One output of an upstream job, as a job reading its sink topic receives it (the event's value). */
export interface OutputEvent<V = unknown> {
  /** Deterministic per (job, version, key, row or window): the revisions of one result share it. */
  id: string;
  /** Grows with every re-emission of the id; the newest revision is the result. */
  revision: number;
  /** `retract`: the result is withdrawn (a session window merged into a larger one); value is null. */
  kind: 'update' | 'retract';
  /** The upstream key the result belongs to. */
  key: string;
  row?: string;
  window?: Window;
  /** The event's time (for a downstream job's `time: (output) => output.time`). */
  time: number;
  value: V;
}

export class TopicSink {
  /** Producers not in use by a write: each write has one to itself, so it waits for its own acks only. */
  private readonly idle: Producer[] = [];
  private readonly messageIdPrefix: string;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly job: { name: string; version: string },
    private readonly topic: string,
    private readonly keyOf: (output: Output) => unknown,
  ) {
    this.messageIdPrefix = `${job.name}/${job.version}/out/`;
  }

  /** Opens the sink; the topic must exist (a TOPIC_NOT_FOUND error naming it otherwise). */
  static async open(
    nc: NatsConnection,
    job: { name: string; version: string },
    sink: { topic: string; key: (output: Output) => unknown },
  ): Promise<TopicSink> {
    const topicSink = new TopicSink(nc, job, sink.topic, sink.key);
    topicSink.idle.push(await topicSink.openProducer());
    return topicSink;
  }

  /** Publishes the outputs (newest revision per id), pipelined; resolves when every one is acknowledged. */
  async write(outputs: readonly Output[]): Promise<void> {
    if (outputs.length === 0) return;
    const producer = this.idle.pop() ?? (await this.openProducer());
    try {
      const maxPayload = this.nc.info?.max_payload;
      for (const output of outputs) {
        const key = this.sinkKey(output);
        const messageId = `${this.messageIdPrefix}${digestOf(output.id)}#${output.revision}`;
        const event = { key, time: eventTimeOf(output), value: outputEvent(output) };
        const payload = this.encode(output, event, headerBytes(messageId), maxPayload);
        if (!producer.publishEncoded(partitionOf(key, producer.partitions), key, payload, messageId))
          await producer.ready();
      }
      await producer.flush();
      this.idle.push(producer);
    } catch (error) {
      // A failed producer stays failed: the next write (the task's retry) starts with a fresh one.
      void producer.close().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    const producers = this.idle.splice(0);
    await Promise.all(producers.map((producer) => producer.close().catch(() => undefined)));
  }

  private async openProducer(): Promise<Producer> {
    try {
      return await Producer.forTopic(this.nc, this.topic, { maxInFlight: 16_384, retryForMs: 120_000 });
    } catch (error) {
      if (!(error instanceof TopicNotFoundError)) throw error;
      throw new KappaError(
        'TOPIC_NOT_FOUND',
        `job ${this.job.name} version ${this.job.version} writes its outputs to topic '${this.topic}', which does not exist: create it with 'kappa topic create ${this.topic} --partitions P' (as many partitions as the jobs reading it need)`,
        { cause: error },
      );
    }
  }

  private sinkKey(output: Output): string {
    let key: unknown;
    try {
      key = this.keyOf(output);
    } catch (error) {
      throw this.rejected(output, 'KEY_INVALID', `its sink key function threw: ${(error as Error).message}`);
    }
    if (typeof key === 'number' && Number.isFinite(key)) return String(key);
    if (typeof key !== 'string' || key.length === 0)
      throw this.rejected(output, 'KEY_INVALID', `its sink key is ${describeKey(key)}, not a non-empty string`);
    return key;
  }

  private encode(
    output: Output,
    event: { key: string; time: number; value: OutputEvent },
    maxHeaderBytes: number,
    maxPayload: number | undefined,
  ): Uint8Array {
    try {
      return encodePublishable(event, this.topic, maxHeaderBytes, maxPayload);
    } catch (error) {
      if (!(error instanceof EventRejectedError)) throw error;
      throw this.rejected(output, error.code as 'KEY_INVALID' | 'EVENT_TOO_LARGE', error.message);
    }
  }

  private rejected(output: Output, code: 'KEY_INVALID' | 'EVENT_TOO_LARGE', why: string): KappaError {
    return new KappaError(
      code,
      `job ${this.job.name} version ${this.job.version} cannot write output ${JSON.stringify(output.id)} (revision ${output.revision}) to topic '${this.topic}': ${why}; fix the job's sink.key (a field every output's value has, or a function of the output's key or window) in a new version`,
    );
  }
}

/** Window outputs happen at their window's last instant (Flink: a window's timestamp is end − 1). */
export function eventTimeOf(output: Output): number {
  if (output.window) return output.window.end - 1;
  if (output.time !== undefined) return output.time;
  throw new KappaError('PROTOCOL_SCHEMA', `output ${JSON.stringify(output.id)} has neither a window nor a time`);
}

/** The value a downstream job receives for an output. */
export function outputEvent(output: Output): OutputEvent {
  return {
    id: output.id,
    revision: output.revision,
    kind: output.kind,
    key: output.key,
    ...(output.row === undefined ? {} : { row: output.row }),
    ...(output.window === undefined ? {} : { window: output.window }),
    time: eventTimeOf(output),
    value: output.value,
  };
}

/** Bytes a message-id header adds to a message (the producer's max_payload check counts them). */
function headerBytes(messageId: string): number {
  const headers = new MsgHdrsImpl();
  headers.set('Nats-Msg-Id', messageIdOf(messageId));
  return headers.encode().length;
}

function describeKey(key: unknown): string {
  if (key === undefined || key === null) return String(key);
  if (typeof key === 'string') return 'an empty string';
  return typeof key === 'object' ? 'an object' : `${typeof key} ${String(key)}`;
}
