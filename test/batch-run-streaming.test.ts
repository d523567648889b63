// `kappa run` never holds its input whole: read directly or through the repartition stage, each
// chunk of input is routed and counted by the keyed stage before the next chunk is read. The input
// here is an async source that, before giving chunk i, checks how many events the job's `add`
// has already counted; a run that read everything first would have counted none.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROUTE_CHUNK, runBatch, type BatchInputEvent } from '../worker/batch-run.js';
import { validateJob } from '../worker/job.js';

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
