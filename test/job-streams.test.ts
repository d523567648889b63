// The shared dead-letter, late-data and output streams are bounded (worker/job-streams.ts): created
// with age and size limits and discard-old, brought to a worker's settings when they differ, and
// what the limits throw away is on the coordinator's /metrics (coordinator/job-stream-usage.ts).
// The flood test runs real processes: a standalone worker with a small dead-letter bound, a
// coordinator, and a topic full of undecodable events.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { beforeEach, describe, expect, it } from 'vitest';
import { streams, subjects } from '../protocol/index.js';
import { DEFAULT_JOB_STREAM_LIMITS, ensureJobStreams, type JobStreamLimits } from '../worker/job-streams.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const NS_PER_MS = 1_000_000;
const DAY_MS = 24 * 60 * 60 * 1000;

// A fresh server for each test: each starts from no job streams.
const nats = useNatsServer({ per: 'test' });
let jsm: JetStreamManager;

beforeEach(async () => {
  jsm = await jetstreamManager(nats.nc);
});

describe('job stream limits', () => {
  it('creates the dead-letter, late-data and output streams bounded by age and size, discarding the oldest, with the duplicate window', async () => {
    const changes = await ensureJobStreams(nats.nc);
    expect(changes.map((change) => [change.stream, change.change])).toEqual([
      [streams.deadLetter, 'created'],
      [streams.lateData, 'created'],
      [streams.output, 'created'],
    ]);
    const expected = [
      [streams.deadLetter, 7 * DAY_MS],
      [streams.lateData, 7 * DAY_MS],
      [streams.output, DAY_MS],
    ] as const;
    for (const [name, maxAgeMs] of expected) {
      const { config } = await jsm.streams.info(name);
      expect({
        stream: name,
        max_age: config.max_age,
        max_bytes: config.max_bytes,
        discard: config.discard,
        duplicate_window: config.duplicate_window,
      }).toEqual({
        stream: name,
        max_age: maxAgeMs * NS_PER_MS,
        max_bytes: 1024 ** 3,
        discard: 'old',
        duplicate_window: 15 * 60 * 1000 * NS_PER_MS,
      });
    }
  });

  it('brings an existing unbounded stream to the configured limits, and a task opening its sinks leaves them', async () => {
    // As created before the streams had limits.
    await jsm.streams.add({
      name: streams.deadLetter,
      subjects: ['kappa.dlq.>'],
      duplicate_window: 15 * 60 * 1000 * NS_PER_MS,
    });
    const limits: JobStreamLimits = {
      ...DEFAULT_JOB_STREAM_LIMITS,
      deadLetter: { maxAgeMs: 60 * 60 * 1000, maxBytes: 64 * 1024 },
    };
    const changes = await ensureJobStreams(nats.nc, limits);
    expect(changes).toContainEqual({
      stream: streams.deadLetter,
      change: 'updated',
      limits: limits.deadLetter,
      previous: { maxAgeMs: 0, maxBytes: 0 },
    });
    // What every task does when it opens its sinks: make sure the streams exist, nothing more.
    expect(await ensureJobStreams(nats.nc)).toEqual([]);
    const { config } = await jsm.streams.info(streams.deadLetter);
    expect([config.max_age, config.max_bytes, config.discard, config.duplicate_window]).toEqual([
      60 * 60 * 1000 * NS_PER_MS,
      64 * 1024,
      'old',
      15 * 60 * 1000 * NS_PER_MS,
    ]);
    // The same settings again change nothing; a max age under the duplicate window shortens the window.
    expect(await ensureJobStreams(nats.nc, limits)).toEqual([]);
    await ensureJobStreams(nats.nc, { ...limits, deadLetter: { maxAgeMs: 60_000, maxBytes: 0 } });
    const shorter = (await jsm.streams.info(streams.deadLetter)).config;
    expect([shorter.max_age, shorter.max_bytes, shorter.duplicate_window]).toEqual([
      60_000 * NS_PER_MS,
      -1,
      60_000 * NS_PER_MS,
    ]);
  });

  it('keeps the dead-letter stream within its bound under a flood of bad events, and the coordinator shows what was discarded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kappa-job-streams-'));
    const processes: KappaProcess[] = [];
    try {
      expect((await kappa(['topic', 'create', 'floods', '--partitions', '1', '--nats', nats.url])).code).toBe(0);
      const jobFile = join(dir, 'job.mjs');
      const example = pathToFileURL(resolve(import.meta.dirname, '../examples/clicks-per-window.mjs')).href;
      writeFileSync(
        jobFile,
        `import base from ${JSON.stringify(example)};\nexport default { ...base, name: 'floods', source: { topic: 'floods' } };\n`,
      );
      const coordinator = new KappaProcess(['coordinator', '--id', 'c1', '--http-port', '0', '--nats', nats.url]);
      processes.push(coordinator);
      const [, port] = await coordinator.waitForLog(/"httpPort":(\d+)/);
      const limitBytes = 32 * 1024;
      const worker = new KappaProcess([
        'worker',
        '--standalone',
        '--job',
        jobFile,
        '--state-dir',
        join(dir, 'state'),
        '--http-port',
        '0',
        '--dlq-max-bytes',
        '32KiB',
        '--dlq-max-age',
        '1h',
        '--nats',
        nats.url,
      ]);
      processes.push(worker);
      await worker.waitForLog(/serving \/metrics/);

      // 300 undecodable events of 1,000 bytes: ten times what the dead-letter stream may hold.
      const js = jetstream(nats.nc);
      const flood = 300;
      for (let index = 0; index < flood; index++)
        await js.publish(subjects.event('floods', 0, `k${index}`), new Uint8Array(1_000).fill(0xc1));
      const state = await pollUntil(async () => (await jsm.streams.info(streams.deadLetter)).state, {
        what: 'every bad event dead-lettered',
        until: (dlq) => dlq.last_seq === flood,
        timeoutMs: 60_000,
        context: () => processes.map((process) => process.logs.slice(-2000)).join('\n---\n'),
      });
      expect(state.bytes).toBeLessThanOrEqual(limitBytes);
      expect(state.messages).toBeGreaterThan(0);
      expect(state.messages).toBeLessThan(flood / 5);
      expect(state.first_seq).toBe(flood - state.messages + 1);

      const metrics = await pollUntil(async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), {
        what: 'the job stream gauges on the leader',
        until: (text) => text.includes('kappa_job_stream_discarded_messages{'),
        timeoutMs: 20_000,
        context: () => coordinator.logs.slice(-2000),
      });
      const gauge = (name: string, stream: string = streams.deadLetter) => {
        const match = new RegExp(`^${name}\\{stream="${stream}"\\} (\\S+)$`, 'm').exec(metrics);
        return match ? Number(match[1]) : undefined;
      };
      expect(gauge('kappa_job_stream_discarded_messages')).toBe(flood - state.messages);
      expect(gauge('kappa_job_stream_messages')).toBe(state.messages);
      expect(gauge('kappa_job_stream_bytes')).toBe(state.bytes);
      expect(gauge('kappa_job_stream_first_sequence')).toBe(state.first_seq);
      expect(gauge('kappa_job_stream_limit_bytes')).toBe(limitBytes);
      expect(gauge('kappa_job_stream_limit_age_seconds')).toBe(3600);
      // Nothing was lost from the others.
      expect(gauge('kappa_job_stream_discarded_messages', streams.lateData)).toBe(0);
      expect(gauge('kappa_job_stream_limit_bytes', streams.output)).toBe(1024 ** 3);
    } finally {
      await Promise.all(processes.map((process) => process.stop()));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a size it cannot read, naming the setting and where it came from', async () => {
    const result = await kappa(
      ['worker', '--standalone', '--job', 'examples/clicks-per-window.mjs', '--nats', nats.url],
      { env: { KAPPA_DLQ_MAX_BYTES: '1 XB' } },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /setting 'dlqMaxBytes' \(from environment variable KAPPA_DLQ_MAX_BYTES\): expected a size such as .*found "1 XB"/,
    );
  });
});
