// `kappa run` as a user meets it: the job's own key and time functions by default, bad lines
// summarized (a few on stderr, all in the rejects file, exit 3) instead of one line each, and
// at the end of input every pending timer fires, as in Flink's batch mode.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kappa } from './harness/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-run-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const countJob = join(dir, 'count.mjs');
const alertJob = join(dir, 'alerts.mjs');

beforeAll(() => {
  writeFileSync(
    countJob,
    `export default {
      name: 'pages', version: 'v1', source: { topic: 'views' },
      key: (view) => view.page,
      time: (view) => view.at,
      watermark: { maxOutOfOrderness: 0 },
      window: { kind: 'tumbling', size: '1m' },
      aggregate: { init: () => 0, add: (count) => count + 1 },
    };`,
  );
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
