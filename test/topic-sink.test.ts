// The topic sink (worker/topic-sink.ts through JobSinks) on a real nats-server: a batch's outputs
// land as events of the sink topic, the newest revision per id, each in the partition its sink key
// hashes to (an FNV-1a written here, not the runtime's), with the envelope time and value the
// README promises and the stream sink's message id; writing a batch again (the same sinks, or new
// ones after a crash) stores nothing more. A missing topic and an output without a usable sink key
// fail with errors that name them. Actor outputs carry the event's, the timer's or emit's time.
import { createHash } from 'node:crypto';
import type { JsMsg } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { createTopic } from '../client/topics.js';
import { decodeEvent, encodeEvent, ManualClock, streams, subjects, type EventEnvelope } from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import type { ActorContext, TimerInfo } from '../worker/actor-context.js';
import { validateJob, type JobDefinition } from '../worker/job.js';
import { JobSinks } from '../worker/sinks.js';
import { TaskProcessor, type BatchResult } from '../worker/task-processor.js';
import type { Output } from '../worker/types.js';
import { cleanUpTaskStores, openStore } from './harness/task-stores.js';
import { readSubject } from './harness/stream-reader.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
cleanUpTaskStores();

/** FNV-1a-32 over UTF-8, mod the partition count: the partitioner every producer agrees on (README "Topics"). */
function expectedPartition(key: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(key, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash % partitions;
}

function expectedMessageId(job: string, version: string, output: Output): string {
  const digest = createHash('sha256').update(output.id).digest('base64url').slice(0, 22);
  return `${job}/${version}/out/${digest}#${output.revision}`;
}

interface StoredEvent extends EventEnvelope {
  partition: number;
  messageId: string | undefined;
}

async function readTopic(topic: string, partitions: number): Promise<StoredEvent[]> {
  const stored: StoredEvent[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    const messages: JsMsg[] = await readSubject(
      nats.nc,
      streams.partition(topic, partition),
      subjects.partition(topic, partition),
    );
    for (const message of messages)
      stored.push({ ...decodeEvent(message.data), partition, messageId: message.headers?.get('Nats-Msg-Id') });
  }
  return stored.sort((left, right) =>
    (left.value as { id: string }).id < (right.value as { id: string }).id ? -1 : 1,
  );
}

function batchOf(outputs: Output[]): BatchResult {
  return {
    outputs,
    late: [],
    deadLetters: [],
    processed: 0,
    lateUpdates: 0,
    lastSequence: 0,
    watermarkMs: 0,
    routed: [],
    mark: undefined,
  };
}

const windowJob = (name: string, sink: JobDefinition['sink']) =>
  validateJob({
    name,
    version: 'v1',
    source: { topic: 'clicks' },
    time: (click: { ts: number }) => click.ts,
    watermark: { maxOutOfOrderness: 0 },
    window: { kind: 'tumbling', size: '10s' },
    aggregate: { init: () => 0, add: (count: number) => count + 1 },
    sink,
  });

function windowOutput(
  job: string,
  key: string,
  start: number,
  revision: number,
  value: unknown,
  kind: Output['kind'] = 'update',
): Output {
  return {
    id: `${job}/v1/${key}@${start}`,
    job,
    version: 'v1',
    key,
    window: { start, end: start + 10_000 },
    value,
    revision,
    kind,
  };
}

describe('topic sink', () => {
  it('publishes every revision, in emission order, to the partition of its key, with its time, value and message id; a second write stores nothing', async () => {
    const partitions = 4;
    await createTopic(nats.nc, { name: 'counts-out', partitions });
    const job = windowJob('counts', { kind: 'topic', topic: 'counts-out' });
    const outputs: Output[] = [
      windowOutput('counts', 'ann', 0, 1, 1),
      windowOutput('counts', 'ann', 0, 2, 3),
      windowOutput('counts', 'bob', 0, 1, 5),
      windowOutput('counts', 'bob', 10_000, 1, 2),
      windowOutput('counts', 'bob', 10_000, 2, null, 'retract'),
      // An actor output: no window, the time it was emitted at, a named row.
      {
        id: 'counts/v1/3:cat/r',
        job: 'counts',
        version: 'v1',
        key: 'cat',
        row: 'r',
        value: 'x',
        revision: 4,
        kind: 'update',
        time: 12_345,
      },
      ...Array.from({ length: 24 }, (_, index) => windowOutput('counts', `key-${index}`, 20_000, 1, index)),
    ];
    // The reference: every output, each revision once, a topic being a changelog its readers
    // consume record by record (ids sorted; an id's revisions stay in emission order).
    const expected = outputs
      .map((output) => {
        const time = output.window ? output.window.end - 1 : output.time!;
        return {
          key: output.key,
          time,
          value: {
            id: output.id,
            revision: output.revision,
            kind: output.kind,
            key: output.key,
            ...(output.row ? { row: output.row } : {}),
            ...(output.window ? { window: output.window } : {}),
            time,
            value: output.value,
          },
          partition: expectedPartition(output.key, partitions),
          messageId: expectedMessageId('counts', 'v1', output),
        };
      })
      .sort((left, right) => (left.value.id < right.value.id ? -1 : 1));

    const sinks = await JobSinks.open(nats.nc, job);
    await sinks.write(batchOf(outputs));
    const stored = await readTopic('counts-out', partitions);
    expect(stored).toEqual(expected);
    expect(new Set(stored.map((event) => event.partition)).size).toBeGreaterThan(1);

    // The same batch again, from the same sinks and from new ones (a task restarted after a crash).
    await sinks.write(batchOf(outputs));
    await sinks.close();
    const restarted = await JobSinks.open(nats.nc, job);
    await restarted.write(batchOf(outputs.slice().reverse()));
    await restarted.close();
    expect(await readTopic('counts-out', partitions)).toEqual(expected);
  });

  it('keys each event by the sink key: a field of the output value, or a function of the output', async () => {
    await createTopic(nats.nc, { name: 'by-field', partitions: 3 });
    await createTopic(nats.nc, { name: 'by-window', partitions: 3 });
    const outputs = ['ann', 'bob', 'cat', 'dan'].map((key, index) =>
      windowOutput('fields', key, index * 10_000, 1, { item: `item-${key}`, clicks: index }),
    );
    const byField = await JobSinks.open(
      nats.nc,
      windowJob('fields', { kind: 'topic', topic: 'by-field', key: 'item' }),
    );
    await byField.write(batchOf(outputs));
    await byField.close();
    const fieldEvents = await readTopic('by-field', 3);
    expect(fieldEvents.map((event) => [event.key, event.partition])).toEqual(
      outputs.map((output) => {
        const item = (output.value as { item: string }).item;
        return [item, expectedPartition(item, 3)];
      }),
    );

    const byWindow = await JobSinks.open(
      nats.nc,
      windowJob('fields', { kind: 'topic', topic: 'by-window', key: (output: Output) => String(output.window!.start) }),
    );
    await byWindow.write(batchOf(outputs));
    await byWindow.close();
    const windowEvents = await readTopic('by-window', 3);
    expect(windowEvents.map((event) => [event.key, event.partition])).toEqual(
      outputs.map((output) => [String(output.window!.start), expectedPartition(String(output.window!.start), 3)]),
    );
  });

  it('fails a write whose output has no usable sink key, naming the output, the topic and the fix', async () => {
    await createTopic(nats.nc, { name: 'keyless', partitions: 2 });
    const sinks = await JobSinks.open(nats.nc, windowJob('keyless', { kind: 'topic', topic: 'keyless', key: 'item' }));
    const output = windowOutput('keyless', 'ann', 0, 1, { clicks: 3 });
    const failure = await sinks.write(batchOf([output])).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'KEY_INVALID' });
    expect((failure as Error).message).toContain(JSON.stringify(output.id));
    expect((failure as Error).message).toContain("topic 'keyless'");
    expect((failure as Error).message).toContain('sink.key');
    // The sinks stay usable: the task's retry (or a fixed job) can write again.
    await sinks.write(batchOf([windowOutput('keyless', 'bob', 0, 1, { item: 'x' })]));
    await sinks.close();
    expect((await readTopic('keyless', 2)).map((event) => event.key)).toEqual(['x']);
  });

  it('refuses to open when the sink topic does not exist, naming it and how to create it', async () => {
    const failure = await JobSinks.open(nats.nc, windowJob('lost', { kind: 'topic', topic: 'nowhere' })).catch(
      (error: unknown) => error,
    );
    expect(failure).toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    expect((failure as Error).message).toContain("job lost version v1 writes its outputs to topic 'nowhere'");
    expect((failure as Error).message).toContain("'kappa topic create nowhere");
  });

  it("gives actor outputs the event's time, the timer's time, or the time emit was given", async () => {
    await createTopic(nats.nc, { name: 'actor-out', partitions: 2 });
    const job = validateJob({
      name: 'reminders',
      version: 'v1',
      source: { topic: 'clicks' },
      time: (event: { ts: number }) => event.ts,
      watermark: { maxOutOfOrderness: 0 },
      handlerRetries: 0,
      sink: { kind: 'topic', topic: 'actor-out' },
      actor: {
        onEvent(ctx: ActorContext, event: { ts: number; at?: number }) {
          if (event.at === undefined) {
            ctx.emit('seen');
            ctx.setEventTimeTimer(event.ts + 500, 'remind');
          } else {
            ctx.emit('scheduled', { row: 'at', time: event.at });
          }
        },
        onTimer(ctx: ActorContext, timer: TimerInfo) {
          ctx.emit('reminded', { row: timer.tag });
        },
      },
    });
    const badTime = { ...job, actor: { onEvent: (ctx: ActorContext) => ctx.emit('bad', { time: Number.NaN }) } };
    const processor = new TaskProcessor(job, 0, new KeyedState(await openStore()), new ManualClock(0));
    const events = [
      { key: 'ann', value: { ts: 1_000 } },
      { key: 'bob', value: { ts: 1_200, at: 99_999 } },
      { key: 'cat', value: { ts: 3_000 } },
    ];
    const sinks = await JobSinks.open(nats.nc, job);
    await sinks.write(
      await processor.processBatch(
        events.map((event, index) => ({
          data: encodeEvent({ key: event.key, time: 0, value: event.value }),
          sequence: index + 1,
        })),
      ),
    );
    await sinks.write(await processor.endOfInput());
    await sinks.close();
    const stored = await readTopic('actor-out', 2);
    const timeOf = (key: string, value: string) =>
      stored.find((event) => event.key === key && (event.value as { value: string }).value === value)?.time;
    expect([
      timeOf('ann', 'seen'),
      timeOf('bob', 'scheduled'),
      timeOf('ann', 'reminded'),
      timeOf('cat', 'reminded'),
    ]).toEqual([1_000, 99_999, 1_500, 3_500]);
    expect(stored.every((event) => (event.value as { time: number }).time === event.time)).toBe(true);

    // A time that is not a finite number is the handler's error: the event is dead-lettered.
    const badProcessor = new TaskProcessor(badTime, 0, new KeyedState(await openStore()), new ManualClock(0));
    const result = await badProcessor.processBatch([
      { data: encodeEvent({ key: 'ann', time: 0, value: { ts: 1 } }), sequence: 1 },
    ]);
    expect(result.outputs).toEqual([]);
    expect(result.deadLetters.map((letter) => [letter.reason, letter.error])).toEqual([
      ['handler-failed', 'onEvent threw after 1 attempts: emit: time must be a finite number of ms, found NaN'],
    ]);
  });
});
