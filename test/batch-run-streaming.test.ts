// `kappa run` never holds its input whole: read directly or through the repartition stage, each
// chunk of input is routed and counted by the keyed stage before the next chunk is read. The input
// here is an async source that, before giving chunk i, checks how many events the job's `add`
// has already counted; a run that read everything first would have counted none. The same holds
// for a run over a topic's partitions (`--from-archive`), whose partitions are merged by log time
// as they are read: it equals the run over the same events as a file in log order, late set too.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeEvent, partitionOf } from '../protocol/index.js';
import { ROUTE_CHUNK, runBatch, runBatchOverPartitions, type BatchInputEvent } from '../worker/batch-run.js';
import { validateJob } from '../worker/job.js';
import type { RawMessage } from '../worker/operator.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'kappa-batch-streaming-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const CHUNKS = 6;

describe('a batch run over a chunked source', () => {
  for (const keying of ['direct', 'repartitioned'] as const) {
    it(`counts each chunk before it reads the next (${keying})`, async () => {
      let counted = 0;
      const countedBeforeChunk: number[] = [];
      const job = validateJob({
        name: `streaming-${keying}`,
        version: 'v1',
        source: { topic: 'clicks' },
        // A function could return anything: the run repartitions. The field: read directly.
        key: keying === 'direct' ? 'user' : (click: { user: string }) => click.user,
        time: (click: { t: number }) => click.t,
        watermark: { maxOutOfOrderness: 0 },
        window: { kind: 'tumbling', size: 1_000_000 },
        aggregate: {
          init: () => 0,
          add: (count: number) => {
            counted++;
            return count + 1;
          },
        },
      });
      async function* chunks(): AsyncGenerator<BatchInputEvent[]> {
        for (let chunk = 0; chunk < CHUNKS; chunk++) {
          countedBeforeChunk.push(counted);
          // One source partition: a chunk of ROUTE_CHUNK events is one full route batch.
          yield Array.from({ length: ROUTE_CHUNK }, (_, index) => {
            const t = chunk * ROUTE_CHUNK + index;
            return { key: 'u', time: t, value: { user: `user-${t % 7}`, t } };
          });
        }
      }
      const run = await runBatch(job, chunks(), {
        partitions: 1,
        producerKey: 'user',
        stateDir: join(stateRoot, keying),
        batchSize: 100,
      });
      expect(run.plan.repartition === null).toBe(keying === 'direct');
      expect(counted).toBe(CHUNKS * ROUTE_CHUNK);
      // Before chunk i, the events of every chunk before it were counted (all but a batch's rest).
      countedBeforeChunk.forEach((before, chunk) => expect(before).toBeGreaterThanOrEqual(chunk * ROUTE_CHUNK - 100));
      expect(countedBeforeChunk.at(-1)).toBeGreaterThan(0);
    });
  }
});

describe("a repartitioned run over a topic's partitions (kappa run --from-archive)", () => {
  it('merges the partitions by log time as it reads them, and equals the file run in log order', async () => {
    const PARTITIONS = 3;
    const EVENTS = 7_500;
    let counted = 0;
    const definition = (countAdds: boolean) => ({
      name: 'by-user',
      version: 'v1',
      source: { topic: 'clicks' },
      key: (click: { user: string }) => click.user,
      time: (click: { t: number }) => click.t,
      watermark: { maxOutOfOrderness: 50 },
      window: { kind: 'tumbling' as const, size: 1_000 },
      aggregate: {
        init: () => 0,
        add: (count: number) => {
          if (countAdds) counted++;
          return count + 1;
        },
      },
    });
    // The log order: log times rise; event times jitter, and every 97th event is late.
    const events = Array.from({ length: EVENTS }, (_, index) => {
      const t = index * 3 - ((index * 7_919) % 40) - (index % 97 === 96 ? 2_000 : 0);
      return { page: `p${(index * 31) % 23}`, user: `u${index % 11}`, t, logTimeMs: 1_000_000 + index };
    });
    const partitions: RawMessage[][] = Array.from({ length: PARTITIONS }, () => []);
    for (const event of events) {
      const messages = partitions[partitionOf(event.page, PARTITIONS)]!;
      const value = { page: event.page, user: event.user, t: event.t };
      messages.push({
        data: encodeEvent({ key: event.page, time: event.t, value }),
        sequence: messages.length + 1,
        logTimeMs: event.logTimeMs,
      });
    }
    // Segments of 500; how far each partition has been read when the keyed stage first counts.
    const readWhenFirstCounted: number[] = [];
    const read = new Array<number>(PARTITIONS).fill(0);
    async function* segments(partition: number): AsyncGenerator<readonly RawMessage[]> {
      for (let start = 0; start < partitions[partition]!.length; start += 500) {
        if (counted > 0 && readWhenFirstCounted.length === 0) readWhenFirstCounted.push(...read);
        read[partition] = start + 500;
        yield partitions[partition]!.slice(start, start + 500);
      }
    }
    const fromPartitions = await runBatchOverPartitions(validateJob(definition(true)), PARTITIONS, segments, {
      producerKey: 'page',
      stateDir: join(stateRoot, 'partitions'),
      readAtMs: 2_000_000,
      batchSize: 100,
    });
    expect(fromPartitions.plan.repartition).not.toBeNull();
    // The keyed stage counted before any partition was read to its end.
    expect(readWhenFirstCounted.length).toBe(PARTITIONS);
    readWhenFirstCounted.forEach((upTo, partition) => expect(upTo).toBeLessThan(partitions[partition]!.length));

    const fromFile = await runBatch(
      validateJob(definition(false)),
      events.map((event) => ({
        key: event.page,
        time: event.t,
        value: { page: event.page, user: event.user, t: event.t },
      })),
      { partitions: PARTITIONS, producerKey: 'page', stateDir: join(stateRoot, 'file'), readAtMs: 2_000_000 },
    );
    const rows = (run: typeof fromFile) =>
      [...run.table.values()]
        .map((row) => [row.key, row.window!.start, row.value])
        .sort((a, b) => String(a).localeCompare(String(b)));
    expect(rows(fromPartitions)).toEqual(rows(fromFile));
    expect(fromPartitions.late.length).toBeGreaterThan(0);
    const late = (run: typeof fromFile) =>
      run.late.map((record) => (record.value as { t: number }).t).sort((a, b) => a - b);
    expect(late(fromPartitions)).toEqual(late(fromFile));
    expect(fromPartitions.processed).toBe(fromFile.processed);
  });
});
