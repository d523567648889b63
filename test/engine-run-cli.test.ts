// `kappa run` as a user meets it: the job's own key and time functions by default, bad lines
// summarized (a few on stderr, all in the rejects file, exit 3) instead of one line each, and
// at the end of input every pending timer fires, as in Flink's batch mode.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kappa } from './harness/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-run-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const countJob = join(dir, 'count.mjs');
const alertJob = join(dir, 'alerts.mjs');
const lateCountJob = join(dir, 'late-count.mjs');

/** A count of views per page and minute; `extra` adds job fields. */
const pageCountJob = (name: string, extra = '') => `export default {
  name: '${name}', version: 'v1', source: { topic: 'views' },
  key: (view) => view.page,
  time: (view) => view.at,
  watermark: { maxOutOfOrderness: 0 },
  window: { kind: 'tumbling', size: '1m' },${extra}
  aggregate: { init: () => 0, add: (count) => count + 1 },
};`;

beforeAll(() => {
  writeFileSync(countJob, pageCountJob('pages'));
  // Windows stay open 10 minutes after they fire, for late views: many open windows at a time.
  writeFileSync(lateCountJob, pageCountJob('late-pages', " allowedLateness: '10m',"));
  writeFileSync(
    alertJob,
    `export default {
      name: 'alerts', version: 'v1', source: { topic: 'readings' },
      key: (reading) => reading.sensor,
      time: (reading) => reading.at,
      watermark: { maxOutOfOrderness: 0 },
      actor: {
        onEvent(ctx, reading) {
          if (reading.level > 10) {
            ctx.emit('alert');
            ctx.setEventTimeTimer(reading.at + 300000, 'quiet');
            ctx.setProcessingTimeTimer(ctx.now() + 3600000, 'page-oncall');
          }
        },
        onTimer(ctx, timer) {
          ctx.emit(timer.tag === 'quiet' ? 'cleared' : 'paged', { row: timer.tag });
        },
      },
    };`,
  );
});

describe('kappa run', () => {
  it("keys and times events with the job's own functions, and summarizes 20,000 bad lines in a few", async () => {
    const lines: string[] = [];
    for (let index = 0; index < 20_000; index++)
      lines.push(index % 2 === 0 ? 'not json' : JSON.stringify({ note: 'no page' }));
    const base = Date.UTC(2026, 0, 1);
    for (let index = 0; index < 300; index++)
      lines.push(JSON.stringify({ page: `p${index % 3}`, at: new Date(base + index * 1000).toISOString() }));
    const input = join(dir, 'views.jsonl');
    writeFileSync(input, lines.join('\n') + '\n');
    const result = await kappa(['run', countJob, '--input', input, '--partitions', '2']);
    expect(result.code).toBe(3);
    const stderr = result.stderr.trim().split('\n');
    expect(stderr.length).toBeLessThan(12);
    expect(result.stderr).toContain(`20000 rejected lines (see ${input}.rejects)`);
    const rejected = readFileSync(`${input}.rejects`, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { line: number; reason: string });
    expect(rejected).toHaveLength(20_000);
    expect(rejected[1]).toMatchObject({
      line: 2,
      reason: expect.stringContaining("the job's key function gave no key"),
    });
    // 300 views, one a second over 5 minutes: 5 windows per page, 20 views each.
    const rows = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; start: number; value: number });
    expect(rows).toHaveLength(15);
    expect(rows.every((row) => row.value === 20)).toBe(true);
  });

  it('gives the same table and late set when windows spill to RocksDB past --window-memory-rows, equal to a count by hand', async () => {
    // 200 pages over 200 minutes, out of order by up to 12 minutes, windows open 11 minutes each:
    // about 1,100 open windows per partition against a budget of 50, checked after each batch of
    // 10,000 events; late views within the lateness read spilled windows back.
    const base = Date.UTC(2026, 0, 1);
    const lines: string[] = [];
    const expected = new Map<string, number>();
    let seed = 7;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const minuteOf = (page: string, at: number) => `${page}@${at - (at % 60_000)}`;
    for (let index = 0; index < 40_000; index++) {
      const page = `p${Math.floor(random() * 200)}`;
      const at = base + index * 300 - (random() < 0.2 ? Math.floor(random() * 720_000) : 0);
      lines.push(JSON.stringify({ page, at: new Date(at).toISOString() }));
      expected.set(minuteOf(page, at), (expected.get(minuteOf(page, at)) ?? 0) + 1);
    }
    const input = join(dir, 'spill.jsonl');
    writeFileSync(input, lines.join('\n') + '\n');
    const runWith = async (extra: string[]) => {
      const late = join(dir, `spill-${extra.length}.late`);
      const result = await kappa([
        'run',
        lateCountJob,
        '--input',
        input,
        '--partitions',
        '2',
        '--late',
        late,
        ...extra,
      ]);
      expect(result.code, result.stderr).toBe(0);
      const table = result.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { key: string; start: number; value: number });
      const lateViews = readFileSync(late, 'utf8')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { key: string; time: number });
      return { table, lateViews };
    };
    const inMemory = await runWith([]);
    const spilled = await runWith(['--window-memory-rows', '50']);
    expect(spilled.table).toEqual(inMemory.table);
    expect(spilled.lateViews).toEqual(inMemory.lateViews);
    // The reference: every view counted in its page's minute, but the late ones (past the lateness).
    for (const view of spilled.lateViews) {
      const id = minuteOf(view.key, view.time);
      expected.set(id, expected.get(id)! - 1);
      if (expected.get(id) === 0) expected.delete(id);
    }
    expect(spilled.lateViews.length).toBeGreaterThan(100);
    expect(new Map(spilled.table.map((row) => [`${row.key}@${row.start}`, row.value]))).toEqual(expected);
  });

  it('spills windows when their accumulators fill the heap long before the row budget, instead of running out of memory', async () => {
    // A list of pages per user and hour, kept a day for late clicks: 96,000 windows (far below the
    // default budget of 1M rows) holding 384,000 strings of ≈ 110 characters, ≈ 70 MB of live heap.
    // Under a 128 MB heap the process died of it ("JavaScript heap out of memory") before the
    // operator spilled past a share of the heap (worker/heap-pressure.ts).
    const job = join(dir, 'pages-per-hour.mjs');
    writeFileSync(
      job,
      `export default {
        name: 'pages', version: 'v1', source: { topic: 'clicks' }, key: 'user',
        time: (click) => click.ts, watermark: { maxOutOfOrderness: '1s' },
        window: { kind: 'tumbling', size: '1h' }, allowedLateness: '1d',
        aggregate: { init: () => [], add: (pages, click) => { pages.push(click.page); return pages; }, result: (pages) => pages.length },
      };`,
    );
    const start = Date.UTC(2026, 0, 1);
    const input = join(dir, 'pages.jsonl');
    const expected = new Map<string, number>();
    const chunk: string[] = [];
    writeFileSync(input, '');
    for (let hour = 0; hour < 24; hour++) {
      for (let user = 0; user < 4_000; user++) {
        for (let visit = 0; visit < 4; visit++) {
          const ts = start + hour * 3_600_000 + (user * 4 + visit) * 200;
          const page = `/a/rather/long/page/path/number/${(user * 7 + visit * 13 + hour) % 1_000}/${'x'.repeat(70)}`;
          chunk.push(JSON.stringify({ user: `u${user}`, ts, page }));
          const window = `u${user}@${start + hour * 3_600_000}`;
          expected.set(window, (expected.get(window) ?? 0) + 1);
        }
      }
      appendFileSync(input, chunk.join('\n') + '\n');
      chunk.length = 0;
    }
    const result = await kappa(['run', job, '--input', input], {
      env: { NODE_OPTIONS: '--max-old-space-size=128' },
    });
    expect(result.code, result.stderr.slice(-2_000)).toBe(0);
    const table = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; start: number; value: number });
    expect(table).toHaveLength(96_000);
    expect(new Map(table.map((row) => [`${row.key}@${row.start}`, row.value]))).toEqual(expected);
  });

  it('writes out and deactivates actor state when it fills the heap, instead of running out of memory', async () => {
    // 60,000 users' visited pages in actor state (a list per user, ≈ 60 MB of strings), one user
    // after another, far below the default budget of 100,000 active keys. Under a 96 MB heap the
    // process died of it before keyed state was written out and thinned past a share of the heap.
    const job = join(dir, 'visited-pages.mjs');
    writeFileSync(
      job,
      `export default {
        name: 'visits', version: 'v1', source: { topic: 'clicks' }, key: 'user',
        time: (click) => click.ts, watermark: { maxOutOfOrderness: '1s' },
        actor: {
          onEvent(ctx, click) {
            const pages = ctx.value('pages');
            const list = pages.get() ?? [];
            list.push(click.page);
            pages.set(list);
            ctx.emit({ visits: list.length, last: click.page.slice(-8) });
          },
        },
      };`,
    );
    const start = Date.UTC(2026, 0, 1);
    const input = join(dir, 'visits.jsonl');
    const expected = new Map<string, { visits: number; last: string }>();
    writeFileSync(input, '');
    const chunk: string[] = [];
    for (let user = 0; user < 60_000; user++) {
      for (let visit = 0; visit < 8; visit++) {
        const page = `/a/rather/long/page/path/number/${(user * 7 + visit * 13) % 1_000}/${'x'.repeat(62)}${String(user).padStart(8, '0')}`;
        chunk.push(JSON.stringify({ user: `u${user}`, ts: start + (user * 8 + visit) * 10, page }));
        expected.set(`u${user}`, { visits: visit + 1, last: page.slice(-8) });
      }
      if (chunk.length >= 10_000) {
        appendFileSync(input, chunk.join('\n') + '\n');
        chunk.length = 0;
      }
    }
    appendFileSync(input, chunk.join('\n') + '\n');
    const result = await kappa(['run', job, '--input', input], { env: { NODE_OPTIONS: '--max-old-space-size=96' } });
    expect(result.code, result.stderr.slice(-2_000)).toBe(0);
    const table = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; value: { visits: number; last: string } });
    expect(new Map(table.map((row) => [row.key, row.value]))).toEqual(expected);
  });

  it('fires pending event-time and processing-time timers at the end of input', async () => {
    const input = join(dir, 'readings.jsonl');
    writeFileSync(
      input,
      [
        { sensor: 's1', at: 1_000, level: 50 },
        { sensor: 's2', at: 2_000, level: 1 },
      ]
        .map((line) => JSON.stringify(line))
        .join('\n'),
    );
    const result = await kappa(['run', alertJob, '--input', input]);
    expect(result.code).toBe(0);
    const rows = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; value: string });
    expect(rows.map((row) => row.value).sort()).toEqual(['alert', 'cleared', 'paged']);
  });
});
