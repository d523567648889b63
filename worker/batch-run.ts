// `kappa run`: the same job and the same TaskProcessor over a file instead of a topic, no NATS.
// The run is planned as the cluster plans it (protocol/job-plan.ts), from what it is told about
// the topics: how many partitions each source has and which field the producer keyed by.
//
// - Read directly (one source keyed as the producer keyed): events are routed to partitions with
//   the topic's hash and kept in input order within each, so lateness decisions match a streaming
//   run over a P-partition topic.
// - Repartitioned (another key, another partition count, several sources): both stages run as in
//   the cluster. One route processor per source partition keys its events in order and emits the
//   routed records and watermark marks a route task publishes; each keyed partition then reads
//   what reached it through a merged processor, whose watermark is the minimum over the upstream
//   partitions'. The input goes through both stages a chunk at a time (never held whole): each
//   source partition routes ROUTE_CHUNK of its events at a time and marks its watermark to every
//   keyed partition after each and after its last; what one chunk routes reaches the keyed
//   partitions in input order (the order of `events`), so each source partition's own order is
//   kept, as in the repartition topic. Streaming interleaves by arrival and marks every 200 ms, so the two runs can differ
//   only in which events are late — never when no event is late in its own source partition, and
//   an event either run calls late is always late in its source partition (README "Keys and
//   partitions").
//
// At the end of input the watermark goes to the end of time and every remaining window fires
// (Flink's batch mode).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  encodeEvent,
  encodeWatermarkMark,
  KappaError,
  ManualClock,
  partitionOf,
  planJob,
  routeStage as routeStageName,
  type EventEnvelope,
  type JobPlan,
} from '../protocol/index.js';
import { KeyedState } from '../state/keyed-state.js';
import { TaskStore } from '../state/task-store.js';
import { systemClock, type Clock } from '../protocol/clock.js';
import { declarationOf, type JobSpec } from './job.js';
import { ServingView } from './serving-view.js';
import { taskInputOf } from './task-input.js';
import { MARK_INTERVAL_MS, TaskProcessor, type BatchResult, type RawMessage } from './task-processor.js';
import type { DeadLetter, LateRecord, Output } from './types.js';
import { HeapWatch } from './heap-pressure.js';

export interface BatchInputEvent {
  /** The key the producer gave the event (what its --key field gives): the partition it is in. */
  key: string;
  /** Event time carried in the envelope; the source's `time` function decides event time. */
  time: number;
  value: unknown;
  /** The job's source the event was read from: its name or its index in the job's sources (default the first). */
  source?: number | string;
}

export interface BatchRunOptions {
  /** Partitions of the sources' topics: one count for all, or by source name. */
  partitions: number | Readonly<Record<string, number>>;
  /**
   * The field the producer keyed the events by (`kappa produce --key`; what a topic records as its
   * key). undefined: each event's key is already the job's key for it, so a job with one source
   * is read directly.
   */
  producerKey?: string;
  /** Partitions of the keyed stage of a repartitioned job that does not say (`partitions`); default: the most any source has. */
  keyedPartitions?: number;
  /** Where the per-partition RocksDB instances live (wiped first). */
  stateDir: string;
  /** Events per processor batch; results must not depend on it. */
  batchSize?: number;
  clock?: Clock;
  /** When the input was read (default: now): what the far-future guard measures event times against. */
  readAtMs?: number;
  /** Keep every output (all revisions) in the result's `outputs` (default true); the table is kept either way. */
  keepOutputs?: boolean;
  /** Rows of open windows a partition's task holds in memory before it spills windows to RocksDB. */
  windowMemoryRows?: number;
}

export interface BatchRunResult {
  /** How the run read its sources: directly, or through a repartition stage. */
  plan: JobPlan;
  /** Final table: newest revision per output id, retracted rows removed. */
  table: ServingView;
  /** Every output in emission order (all revisions); empty when the run was told not to keep them. */
  outputs: Output[];
  late: LateRecord[];
  /** Of both stages: a route task dead-letters what it cannot key or time (ids start with its stage). */
  deadLetters: DeadLetter[];
  /** Events the keyed stage handled. */
  processed: number;
  lateUpdates: number;
}

/**
 * Events a source partition routes between two watermark marks. A count, not a clock, so the
 * results depend neither on the batch size nor on how fast the machine is.
 */
export const ROUTE_CHUNK = 1_000;

/** A run's result before any event: an empty table and no records. */
function emptyRun(plan: BatchRunResult['plan']): BatchRunResult {
  return { plan, table: new ServingView(), outputs: [], late: [], deadLetters: [], processed: 0, lateUpdates: 0 };
}

/** The plan of a batch run: planJob over the topics as `options` describes them. */
export function batchPlan(
  job: JobSpec,
  options: Pick<BatchRunOptions, 'partitions' | 'producerKey' | 'keyedPartitions'>,
): JobPlan {
  const declaration = declarationOf(job);
  const partitionsOf = (name: string): number => {
    const partitions = typeof options.partitions === 'number' ? options.partitions : options.partitions[name];
    if (partitions === undefined)
      throw new KappaError('JOB_INVALID', `the run gives no partition count for source '${name}' of job ${job.name}`);
    return partitions;
  };
  // Without a producer key, the events carry the job's own keys: the topic is keyed as the job keys.
  const sources =
    options.producerKey === undefined
      ? declaration.sources.map((source) => ({ ...source, keying: { kind: 'event' as const } }))
      : declaration.sources;
  // A topic per source, named after the source: two sources on one topic keep their own counts.
  const outcome = planJob(
    job.name,
    job.version,
    {
      sources: sources.map((source) => ({ ...source, topic: source.name })),
      partitions: declaration.partitions ?? options.keyedPartitions,
    },
    (topic) => ({
      partitions: partitionsOf(topic),
      replicas: 1,
      createdAt: '',
      ...(options.producerKey === undefined ? {} : { key: options.producerKey }),
    }),
  );
  if ('missingTopic' in outcome) throw new KappaError('JOB_INVALID', `no topic for source ${outcome.missingTopic}`);
  // The plan names the job's topics, as the cluster's would.
  return {
    ...outcome.plan,
    sources: outcome.plan.sources.map((source, index) => ({ ...source, topic: job.sources[index]!.topic })),
  };
}

/** What runBatch reads: events (or raw bytes, for testing undecodable input), or chunks of them as a file is read. */
export type BatchInput =
  Iterable<BatchInputEvent | Uint8Array> | AsyncIterable<readonly (BatchInputEvent | Uint8Array)[]>;

export async function runBatch(job: JobSpec, events: BatchInput, options: BatchRunOptions): Promise<BatchRunResult> {
  const plan = batchPlan(job, options);
  const run = emptyRun(plan);
  // A file has no log timestamps: the far-future guard measures event times against the time the
  // run read its input.
  const logTimeMs = options.readAtMs ?? systemClock.now();
  if (plan.repartition === null) {
    // Read directly: each event goes to its partition's task as it is read, a batch at a time, so
    // the input is never held whole (a file larger than memory runs).
    const keyed = new KeyedStage(job, options, run);
    const partitions = plan.sources[0]!.partitions;
    const sequences = new Array<number>(partitions).fill(0);
    for await (const chunk of chunksOf(events)) {
      for (const event of chunk) {
        // Raw bytes (for testing undecodable input) go to partition 0.
        const partition = event instanceof Uint8Array ? 0 : partitionOf(event.key, partitions);
        const sequence = ++sequences[partition]!;
        const message =
          event instanceof Uint8Array
            ? { data: event, sequence, logTimeMs }
            : new InputMessage(event, sequence, logTimeMs);
        if (keyed.add(partition, message)) await keyed.process(partition);
      }
    }
    await keyed.finish();
    return run;
  }
  // Repartitioned: a chunk of input at a time through both stages, so the input is never held whole.
  const sources = new SourcePartitions(job, plan, logTimeMs);
  async function* pieces(): AsyncGenerator<SourcePartition[][]> {
    for await (const chunk of chunksOf(events)) yield sources.split(chunk);
  }
  await runRepartitioned(job, plan, pieces(), options, run, logTimeMs);
  return run;
}

/** The input as chunks: an async source as it comes, a plain iterable in chunks of ROUTE_CHUNK events. */
async function* chunksOf(events: BatchInput): AsyncGenerator<readonly (BatchInputEvent | Uint8Array)[]> {
  if (Symbol.asyncIterator in events) {
    yield* events;
    return;
  }
  let chunk: (BatchInputEvent | Uint8Array)[] = [];
  for (const event of events) {
    chunk.push(event);
    if (chunk.length >= ROUTE_CHUNK) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

/**
 * The job over one source topic's partitions as the log holds them (`kappa run --from-archive`):
 * each partition's messages in sequence order, with their stream sequences and log times, through
 * the same stages as runBatch. Read directly, each partition streams through its task a chunk (an
 * archive segment) at a time and is finished before the next is read, so a history larger than
 * memory runs. A repartitioned job's route stage sees the partitions interleaved by log time (the
 * order the log received them; ties by partition), as a file's lines would be, merged as they are
 * read: memory holds a segment per partition, not the history.
 */
export async function runBatchOverPartitions(
  job: JobSpec,
  partitionCount: number,
  read: (partition: number) => AsyncIterable<readonly RawMessage[]>,
  options: Omit<BatchRunOptions, 'partitions'>,
): Promise<BatchRunResult> {
  if (job.sources.length !== 1)
    throw new KappaError(
      'JOB_INVALID',
      `job ${job.name} reads ${job.sources.length} sources; a run over one topic's partitions feeds one`,
    );
  const plan = batchPlan(job, { ...options, partitions: partitionCount });
  const run = emptyRun(plan);
  if (plan.repartition === null) {
    for (let partition = 0; partition < partitionCount; partition++) {
      const keyed = new KeyedStage(job, options, run);
      for await (const chunk of read(partition))
        for (const message of chunk) if (keyed.add(partition, message)) await keyed.process(partition);
      await keyed.finish();
    }
    return run;
  }
  const pieces = mergedByLogTime(partitionCount, read);
  await runRepartitioned(job, plan, pieces, options, run, options.readAtMs ?? systemClock.now());
  return run;
}

/**
 * Messages of the partitions merged into one input, given to the stages this many at a time: as
 * runBatch takes a file's events, so a run over the archive and a run over the same events as a
 * file in log order are the same run.
 */
const MERGED_PIECE = ROUTE_CHUNK;

/**
 * The partitions' messages interleaved by log time (the order the log received them; ties by
 * partition, each partition in its own order), as the lines of a file would come, a piece of
 * MERGED_PIECE messages at a time: only the chunk each partition is at is held, never the history.
 */
async function* mergedByLogTime(
  partitionCount: number,
  read: (partition: number) => AsyncIterable<readonly RawMessage[]>,
): AsyncGenerator<SourcePartition[][]> {
  const cursors = Array.from({ length: partitionCount }, (_, partition) => ({
    chunks: read(partition)[Symbol.asyncIterator](),
    chunk: [] as readonly RawMessage[],
    index: 0,
    done: false,
  }));
  /** The partition's next chunk, when its current one is used up (the only await, once a chunk). */
  const refill = async (cursor: (typeof cursors)[number]): Promise<void> => {
    while (!cursor.done && cursor.index >= cursor.chunk.length) {
      const next = await cursor.chunks.next();
      if (next.done) cursor.done = true;
      else [cursor.chunk, cursor.index] = [next.value, 0];
    }
  };
  let position = 0;
  let piece = emptyPiece(partitionCount);
  for (;;) {
    let next = -1;
    let nextTime = Infinity;
    for (let partition = 0; partition < partitionCount; partition++) {
      const cursor = cursors[partition]!;
      // Awaited only when a chunk is used up, never for a partition already read to its end.
      if (!cursor.done && cursor.index >= cursor.chunk.length) await refill(cursor);
      if (cursor.done) continue;
      const logTimeMs = cursor.chunk[cursor.index]!.logTimeMs ?? 0;
      if (logTimeMs < nextTime) {
        next = partition;
        nextTime = logTimeMs;
      }
    }
    if (next < 0) break;
    const cursor = cursors[next]!;
    piece[0]![next]!.messages.push(cursor.chunk[cursor.index++]!);
    piece[0]![next]!.positions.push(position++);
    if (position % MERGED_PIECE === 0) {
      yield piece;
      piece = emptyPiece(partitionCount);
    }
  }
  if (position % MERGED_PIECE !== 0) yield piece;
}

function emptyPiece(partitionCount: number): SourcePartition[][] {
  return [Array.from({ length: partitionCount }, (): SourcePartition => ({ messages: [], positions: [] }))];
}

/**
 * Both stages of a repartitioned run: each piece of input (the sources' partitions, or the next
 * chunk of them) through the route processors, and what they route through the keyed partitions'
 * tasks, before the next piece is read.
 */
async function runRepartitioned(
  job: JobSpec,
  plan: JobPlan,
  pieces: AsyncIterable<SourcePartition[][]> | Iterable<SourcePartition[][]>,
  options: Omit<BatchRunOptions, 'partitions'>,
  run: BatchRunResult,
  logTimeMs: number,
): Promise<void> {
  const route = await RouteStage.open(job, plan, options, run);
  const keyed = new KeyedStage(job, options, run, taskInputOf(job, plan, undefined));
  try {
    for await (const sources of pieces) await keyed.addRouted(await route.route(sources), logTimeMs);
    await keyed.addRouted(await route.finish(), logTimeMs);
  } finally {
    await route.close();
  }
  await keyed.finish();
}

/** One partition of a source topic: its messages in order, and where each stood in the input. */
interface SourcePartition {
  messages: RawMessage[];
  positions: number[];
}

/**
 * The input split into the sources' topic partitions by the producer's key, as `kappa produce`
 * would, a chunk at a time: each call gives the chunk's messages per partition, numbered on from
 * the partition's earlier ones, with their positions in the whole input.
 */
class SourcePartitions {
  private readonly sequences: number[][];
  private position = 0;

  constructor(
    private readonly job: JobSpec,
    plan: JobPlan,
    private readonly logTimeMs: number,
  ) {
    this.sequences = plan.sources.map((source) => new Array<number>(source.partitions).fill(0));
  }

  split(events: Iterable<BatchInputEvent | Uint8Array>): SourcePartition[][] {
    const sources = this.sequences.map((partitions) =>
      partitions.map((): SourcePartition => ({ messages: [], positions: [] })),
    );
    for (const event of events) {
      // Raw bytes (for testing undecodable input) go to partition 0 of the first source.
      const source = event instanceof Uint8Array ? 0 : sourceIndexOf(this.job, event.source);
      const partitions = sources[source]!;
      const index = event instanceof Uint8Array ? 0 : partitionOf(event.key, partitions.length);
      const partition = partitions[index]!;
      const sequence = ++this.sequences[source]![index]!;
      partition.messages.push(
        event instanceof Uint8Array
          ? { data: event, sequence, logTimeMs: this.logTimeMs }
          : new InputMessage(event, sequence, this.logTimeMs),
      );
      partition.positions.push(this.position++);
    }
    return sources;
  }
}

/**
 * An event of the input as a partition's message: handed to the processor as it is, encoded only
 * if something asks for its bytes (a dead letter carries them), as the topic would have held them.
 */
class InputMessage implements RawMessage {
  private bytes: Uint8Array | undefined;

  constructor(
    readonly decoded: EventEnvelope,
    readonly sequence: number,
    readonly logTimeMs: number,
  ) {}

  get data(): Uint8Array {
    return (this.bytes ??= encodeEvent(this.decoded));
  }
}

function sourceIndexOf(job: JobSpec, source: number | string | undefined): number {
  if (source === undefined) return 0;
  const index = typeof source === 'number' ? source : job.sources.findIndex((candidate) => candidate.name === source);
  if (job.sources[index] === undefined)
    throw new KappaError(
      'JOB_INVALID',
      `an event names source ${JSON.stringify(source)}, which job ${job.name} does not read (it reads ${job.sources.map((each) => each.name).join(', ')})`,
    );
  return index;
}

/** A record on its way to a keyed partition; `order` places it in the input order. */
interface RoutedRecord {
  order: number;
  data: Uint8Array;
}

/** A source partition's route processor and the events it has not routed yet, with their input positions. */
interface RouteTask {
  processor: TaskProcessor;
  clock: ManualClock;
  pending: SourcePartition;
  /** The input position of the last event it routed. */
  lastPosition: number;
}

/**
 * The route stage: one route processor per source partition, over ROUTE_CHUNK of its events at a
 * time with a clock that moves MARK_INTERVAL_MS between them, so it marks its watermark after each
 * chunk that moved it (the marks a route task sends every 200 ms). route() takes messages of the
 * source partitions (all of them, or the next chunk of the input) and routes every partition's
 * full chunks; finish() routes what is left and adds the marks the route tasks send when their
 * input runs dry. Both return, per keyed partition, the records that reach it, in input order
 * within the call: an event at 2 × its input position, a mark just after the event it follows.
 */
class RouteStage {
  private readonly tasks = new Map<string, RouteTask>();

  private constructor(
    private readonly job: JobSpec,
    private readonly plan: JobPlan,
    private readonly run: BatchRunResult,
    /** Route processors keep no keyed state; the constructor wants a KeyedState all of them can share. */
    private readonly store: TaskStore,
  ) {}

  static async open(
    job: JobSpec,
    plan: JobPlan,
    options: Omit<BatchRunOptions, 'partitions'>,
    run: BatchRunResult,
  ): Promise<RouteStage> {
    const dir = join(options.stateDir, 'route');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    return new RouteStage(job, plan, run, await TaskStore.open(dir));
  }

  async route(sources: SourcePartition[][]): Promise<RoutedRecord[][]> {
    const targets = this.targets();
    for (let sourceIndex = 0; sourceIndex < sources.length; sourceIndex++) {
      for (let partition = 0; partition < sources[sourceIndex]!.length; partition++) {
        const { messages, positions } = sources[sourceIndex]![partition]!;
        if (messages.length === 0) continue;
        const task = this.task(sourceIndex, partition);
        // A loop, not push(...): a chunk may be larger than a call's argument limit.
        for (let index = 0; index < messages.length; index++) {
          task.pending.messages.push(messages[index]!);
          task.pending.positions.push(positions[index]!);
        }
        while (task.pending.messages.length >= ROUTE_CHUNK) await this.routeChunk(task, targets);
      }
    }
    return targets;
  }

  /** What is left, then the mark each route task sends when its input runs dry (if its last chunk's did not say it all). */
  async finish(): Promise<RoutedRecord[][]> {
    const targets = this.targets();
    for (const task of this.tasks.values()) {
      if (task.pending.messages.length > 0) await this.routeChunk(task, targets);
      this.take(targets, await task.processor.onIdle(), [], task.lastPosition);
    }
    return targets;
  }

  async close(): Promise<void> {
    await this.store.close();
  }

  /** Up to ROUTE_CHUNK of the task's pending events through its processor; then its clock moves on. */
  private async routeChunk(task: RouteTask, targets: RoutedRecord[][]): Promise<void> {
    const messages = task.pending.messages.splice(0, ROUTE_CHUNK);
    const positions = task.pending.positions.splice(0, ROUTE_CHUNK);
    task.lastPosition = positions[positions.length - 1]!;
    this.take(
      targets,
      await task.processor.processBatch(messages),
      positions,
      task.lastPosition,
      messages[0]!.sequence,
    );
    task.clock.advance(MARK_INTERVAL_MS);
  }

  private targets(): RoutedRecord[][] {
    return Array.from({ length: this.plan.repartition!.partitions }, () => []);
  }

  private task(sourceIndex: number, partition: number): RouteTask {
    const name = `${sourceIndex}/${partition}`;
    let task = this.tasks.get(name);
    if (task === undefined) {
      const stage = routeStageName(this.plan.sources[sourceIndex]!.name);
      const clock = new ManualClock();
      const input = taskInputOf(this.job, this.plan, stage);
      const processor = new TaskProcessor(
        this.job,
        partition,
        new KeyedState(this.store),
        clock,
        undefined,
        input,
        stage,
      );
      task = { processor, clock, pending: { messages: [], positions: [] }, lastPosition: 0 };
      this.tasks.set(name, task);
    }
    return task;
  }

  /** A batch's routed events (`positions` of its messages, the first numbered `firstSequence`) and mark. */
  private take(
    targets: RoutedRecord[][],
    result: BatchResult,
    positions: readonly number[],
    lastPosition: number,
    firstSequence = 1,
  ): void {
    this.run.deadLetters.push(...result.deadLetters);
    for (const event of result.routed)
      targets[event.target]!.push({ order: 2 * positions[event.sequence - firstSequence]!, data: event.record });
    const mark = result.mark;
    if (mark) {
      const data = encodeWatermarkMark(mark);
      for (const records of targets) records.push({ order: 2 * lastPosition + 1, data });
    }
  }
}

/** One keyed partition of the run: its processor over its own RocksDB. */
interface KeyedTask {
  processor: TaskProcessor;
  state: KeyedState;
  store: TaskStore;
  /** Full collections that left the heap past its share: keyed state is written out and thinned. */
  heapWatch: HeapWatch;
}

/**
 * The keyed stage: one processor per partition over real RocksDB, opened when the partition's
 * first message arrives, fed a batch at a time, and run to the end of input by finish().
 */
class KeyedStage {
  private readonly batchSize: number;
  private readonly tasks = new Map<number, KeyedTask>();
  private readonly opening = new Map<number, Promise<KeyedTask>>();
  private readonly waiting = new Map<number, RawMessage[]>();
  /** Per keyed partition of a repartitioned run, the sequence of the last routed record taken. */
  private readonly routedSequences: number[] = [];

  constructor(
    private readonly job: JobSpec,
    private readonly options: Omit<BatchRunOptions, 'partitions'>,
    private readonly result: BatchRunResult,
    private readonly input?: ReturnType<typeof taskInputOf>,
  ) {
    this.batchSize = options.batchSize ?? 10_000;
  }

  /** Queues a message for its partition; true when the partition has a batch to process. */
  add(partition: number, message: RawMessage): boolean {
    let pending = this.waiting.get(partition);
    if (pending === undefined) this.waiting.set(partition, (pending = []));
    pending.push(message);
    return pending.length >= this.batchSize;
  }

  /** Processes what is queued for the partition. */
  async process(partition: number): Promise<void> {
    const pending = this.waiting.get(partition);
    if (pending === undefined || pending.length === 0) return;
    this.waiting.set(partition, []);
    const task = await this.task(partition);
    const { processor, state } = task;
    for (let start = 0; start < pending.length; start += this.batchSize) {
      this.collect(await processor.processBatch(pending.slice(start, start + this.batchSize)));
      // Past the heap's share too (worker/heap-pressure.ts): written out, and a quarter of
      // the active keys kept.
      const pressed = task.heapWatch.pressed();
      if (state.dirtyRows > 100_000 || pressed) {
        await state.flush();
        state.evict(processor.isPinned, pressed ? Math.floor(state.activeKeys / 4) : undefined);
      }
    }
  }

  /**
   * The keyed stage of a repartitioned run: what the route stage sent each keyed partition, in
   * input order, numbered on as the repartition topic would number it.
   */
  async addRouted(targets: RoutedRecord[][], logTimeMs: number): Promise<void> {
    for (let partition = 0; partition < targets.length; partition++) {
      const records = targets[partition]!;
      if (records.length === 0) continue;
      records.sort((a, b) => a.order - b.order);
      for (const record of records) {
        const sequence = (this.routedSequences[partition] ?? 0) + 1;
        this.routedSequences[partition] = sequence;
        if (this.add(partition, { data: record.data, sequence, logTimeMs })) await this.process(partition);
      }
    }
  }

  /** Every partition to the end of input, in partition order; then their stores are closed. */
  async finish(): Promise<void> {
    const partitions = [...this.waiting.keys()].sort((a, b) => a - b);
    try {
      for (const partition of partitions) {
        await this.process(partition);
        this.collect(await (await this.task(partition)).processor.endOfInput());
      }
    } finally {
      for (const task of this.tasks.values()) await task.store.close();
    }
  }

  private task(partition: number): Promise<KeyedTask> {
    let opening = this.opening.get(partition);
    if (opening === undefined) {
      opening = (async () => {
        const dir = join(this.options.stateDir, String(partition));
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        const store = await TaskStore.open(dir);
        const state = new KeyedState(store);
        const clock = this.options.clock ?? systemClock;
        const processor = new TaskProcessor(
          this.job,
          partition,
          state,
          clock,
          undefined,
          this.input,
          undefined,
          this.options.windowMemoryRows,
        );
        const task: KeyedTask = { processor, state, store, heapWatch: new HeapWatch() };
        this.tasks.set(partition, task);
        return task;
      })();
      this.opening.set(partition, opening);
    }
    return opening;
  }

  private collect(result: BatchResult): void {
    const run = this.result;
    run.table.apply(result.outputs);
    if (this.options.keepOutputs !== false) run.outputs.push(...result.outputs);
    run.late.push(...result.late);
    run.deadLetters.push(...result.deadLetters);
    run.processed += result.processed;
    run.lateUpdates += result.lateUpdates;
  }
}
