// The archive tier as a user meets it, with real processes (the built CLI, a coordinator, a
// nats-server): a topic created with an archive policy is sealed by the coordinator leader and its
// archived ranges leave the stream; `kappa topic describe` shows both tiers; `kappa topic archive`
// seals the rest; `kappa run --from-archive` gives the table `kappa run --input` gives over the
// same events, and the table DuckDB computes over the segment files. Run `npm run build` first.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, describe, expect, it } from 'vitest';
import { ArchiveCatalog, assertContiguous, handOverSequence } from '../archive/catalog.js';
import { NatsObjectSegmentStore } from '../archive/segment-store.js';
import { getTopic } from '../client/index.js';
import { streams } from '../protocol/index.js';
import { kappa as runKappa, KappaProcess } from './harness/cli.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();
const dir = mkdtempSync(join(tmpdir(), 'kappa-archive-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PARTITIONS = 3;
const EVENTS = 3_000;
const SEGMENT = 400;

function kappa(args: string[]) {
  return runKappa([...args, '--nats', nats.url]);
}

const job = join(dir, 'visits-per-minute.mjs');
writeFileSync(
  job,
  `export default {
    name: 'visits', version: 'v1', source: { topic: 'visits' },
    key: 'user',
    time: (visit) => visit.ts,
    watermark: { maxOutOfOrderness: '10s' },
    window: { kind: 'tumbling', size: '1m' },
    aggregate: { init: () => 0, add: (count) => count + 1 },
  };`,
);

describe('archive tier, end to end', () => {
  it('seals by policy at the leader, trims the stream, and replays the archive as kappa run --input would', async () => {
    // Events a few seconds out of order (within the job's 10 s), some clearly late (over a minute).
    const base = Date.UTC(2026, 0, 1);
    const lines: string[] = [];
    for (let index = 0; index < EVENTS; index++) {
      const late = index % 250 === 249 ? 120_000 : 0;
      const ts = base + index * 700 - ((index * 7_919) % 5_000) - late;
      lines.push(JSON.stringify({ user: `user-${(index * 31) % 17}`, ts, page: `/p/${index % 7}` }));
    }
    const input = join(dir, 'visits.jsonl');
    writeFileSync(input, lines.join('\n') + '\n');

    const created = await kappa([
      'topic',
      'create',
      'visits',
      '--partitions',
      String(PARTITIONS),
      '--key',
      'user',
      '--archive-after',
      String(SEGMENT),
      '--hot-retention',
      '1B',
    ]);
    expect(created.stderr).toBe('');
    expect(created.stdout).toContain('archive after 400 messages, hot retention 1 bytes');
    expect((await getTopic(nats.nc, 'visits')).archive).toEqual({ afterMessages: SEGMENT, hotRetentionBytes: 1 });
    expect((await kappa(['produce', 'visits', '--file', input, '--key', 'user', '--time', 'ts'])).code).toBe(0);

    const jsm = await jetstreamManager(nats.nc);
    const counts = await Promise.all(
      Array.from({ length: PARTITIONS }, async (_, partition) =>
        Number((await jsm.streams.info(streams.partition('visits', partition))).state.messages),
      ),
    );
    const catalog = await ArchiveCatalog.open(nats.nc);
    const coordinator = new KappaProcess([
      'coordinator',
      '--id',
      'c1',
      '--nats',
      nats.url,
      '--http-port',
      '0',
      '--archive-interval',
      '300ms',
    ]);
    try {
      // The leader seals every full segment and purges the archived ranges (keeping ≥ 1 byte).
      await pollUntil(
        async () => {
          for (let partition = 0; partition < PARTITIONS; partition++) {
            const { segments } = await catalog.read('visits', partition);
            if (segments.length < Math.floor(counts[partition]! / SEGMENT)) return false;
            const { state } = await jsm.streams.info(streams.partition('visits', partition));
            const keptLast = counts[partition]! % SEGMENT === 0 ? 1 : 0;
            if (state.first_seq !== handOverSequence({ segments: segments.slice(0, segments.length - keptLast) }))
              return false;
          }
          return true;
        },
        { what: 'the leader to seal and trim every partition', timeoutMs: 60_000, context: () => coordinator.logs },
      );
      // The leader's /metrics show both tiers after its latest run: segments, bytes, what is unsealed.
      const [, port] = await coordinator.waitForLog(/"httpPort":(\d+)/);
      const gauge = (text: string, name: string) =>
        Number(text.match(new RegExp(`^${name}\\{topic="visits"\\} (\\S+)$`, 'm'))?.[1] ?? NaN);
      await pollUntil(
        async () => {
          const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          const segments = (await catalog.readTopic('visits', PARTITIONS)).flatMap((entry) => entry.segments);
          const unsealed = counts.reduce((sum, count) => sum + (count % SEGMENT), 0);
          return gauge(text, 'kappa_archive_segments') === segments.length &&
            gauge(text, 'kappa_archive_events') === segments.length * SEGMENT &&
            gauge(text, 'kappa_archive_bytes') === segments.reduce((sum, segment) => sum + segment.bytes, 0) &&
            gauge(text, 'kappa_archive_unsealed_messages') === unsealed &&
            gauge(text, 'kappa_archive_behind_policy_messages') === 0
            ? true
            : undefined;
        },
        { what: 'the archive gauges on the leader', timeoutMs: 20_000 },
      );
    } finally {
      await coordinator.stop();
    }
    for (let partition = 0; partition < PARTITIONS; partition++) {
      const { segments } = await catalog.read('visits', partition);
      assertContiguous('visits', partition, segments);
      expect(segments.map((segment) => segment.count)).toEqual(
        new Array(Math.floor(counts[partition]! / SEGMENT)).fill(SEGMENT),
      );
    }

    // Both tiers in describe; then seal the rest now.
    const described = JSON.parse((await kappa(['topic', 'describe', 'visits', '--json'])).stdout) as {
      totals: { messages: number };
      tiers: { archive: { events: number; segments: number; bytes: number } }[];
    };
    const archivedBefore = described.tiers.reduce((sum, tier) => sum + tier.archive.events, 0);
    expect(archivedBefore).toBe(counts.reduce((sum, count) => sum + Math.floor(count / SEGMENT) * SEGMENT, 0));
    expect(described.tiers.every((tier) => tier.archive.bytes > 0)).toBe(true);
    const table = await kappa(['topic', 'describe', 'visits']);
    expect(table.stdout).toContain('archive after 400 messages');
    expect(table.stdout).toMatch(/archived seqs/);

    const sealed = await kappa(['topic', 'archive', 'visits']);
    expect(sealed.code, sealed.stderr).toBe(0);
    const all = await catalog.readTopic('visits', PARTITIONS);
    expect(all.map((partition) => partition.segments.reduce((sum, segment) => sum + segment.count, 0))).toEqual(counts);

    // The archive replayed equals the file run, rows and late records.
    const lateFromArchive = join(dir, 'late-archive.jsonl');
    const lateFromFile = join(dir, 'late-file.jsonl');
    const fromArchive = await kappa(['run', job, '--from-archive', 'visits', '--late', lateFromArchive]);
    expect(fromArchive.code).toBe(0);
    const fromFile = await runKappa([
      'run',
      job,
      '--input',
      input,
      '--partitions',
      String(PARTITIONS),
      '--key',
      'user',
      '--late',
      lateFromFile,
    ]);
    expect(fromFile.code).toBe(0);
    const rows = (stdout: string) =>
      stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    const archiveRows = rows(fromArchive.stdout);
    expect(archiveRows.length).toBeGreaterThan(100);
    expect(fromArchive.stderr).toContain(`${EVENTS} events`);
    // Read directly (keyed by the topic's key): no repartition hop, whose interleaving of partitions
    // could differ between the two runs (worker/batch-run.ts).
    expect(fromArchive.stderr).not.toContain('repartition');
    expect(readFileSync(lateFromArchive, 'utf8')).toEqual(readFileSync(lateFromFile, 'utf8'));
    expect(archiveRows).toEqual(rows(fromFile.stdout));
    // Each partition stream's sequences are its lines' positions in the partition, as in the file run.
    const lateRecords = rows(readFileSync(lateFromArchive, 'utf8')) as unknown as {
      key: string;
      windows: { start: number }[];
    }[];
    expect(lateRecords.length).toBeGreaterThan(0);
    expect(lateRecords).toEqual(rows(readFileSync(lateFromFile, 'utf8')));
    expect(fromArchive.stderr).toContain(`${EVENTS} events`);

    // DuckDB over the segment files: the same counts for the windows no event was late for.
    const store = await NatsObjectSegmentStore.open(nats.nc);
    const files: string[] = [];
    for (const partition of all)
      for (const segment of partition.segments) {
        const file = join(dir, segment.name.replaceAll('/', '_'));
        writeFileSync(file, (await store.get(segment.name))!);
        files.push(`'${file}'`);
      }
    const instance = await DuckDBInstance.create(':memory:');
    const db = await instance.connect();
    try {
      const result = await db.runAndReadAll(
        `SELECT key, event_time - event_time % 60000 AS start, count(*) AS n FROM read_parquet([${files.join(', ')}]) GROUP BY ALL`,
      );
      const duck = new Map(result.getRows().map(([key, start, n]) => [`${String(key)}@${String(start)}`, Number(n)]));
      const lateWindows = new Set(
        lateRecords.flatMap((record) => record.windows.map((window) => `${record.key}@${window.start}`)),
      );
      let compared = 0;
      for (const row of archiveRows) {
        const id = `${String(row.key)}@${String(row.start)}`;
        if (lateWindows.has(id)) continue;
        expect(row.value, id).toBe(duck.get(id));
        compared++;
      }
      expect(compared).toBeGreaterThan(100);
      expect([...duck.values()].reduce((sum, n) => sum + n, 0)).toBe(EVENTS);
    } finally {
      db.closeSync();
      instance.closeSync();
    }
  });
});
