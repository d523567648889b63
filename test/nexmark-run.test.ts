// `kappa nexmark run` end to end (the built CLI): its own nats-server, a coordinator and a worker,
// 50,000 generated events (the issue's ~50,000), the stateful queries streaming from earliest to caught up, each table
// compared with DuckDB running the query's SQL over the same events. The command exits 0 only
// when every query equals its SQL, and prints one line per query in its table.
import { describe, expect, it } from 'vitest';
import { kappa } from './harness/cli.js';

const QUERIES = ['q3', 'q4', 'q5', 'q7', 'q8', 'q11'];
const EVENTS = 50_000;

describe('kappa nexmark run', { timeout: 300_000 }, () => {
  it('streams q3, q4, q5, q7, q8, q11 over 50,000 events through a local cluster, each equal to its SQL', async () => {
    const result = await kappa(['nexmark', 'run', '--events', String(EVENTS), '--queries', QUERIES.join(',')]);
    const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr.slice(-4000)}`;
    expect(result.code, context).toBe(0);
    // The table comes last, after the generator's summary line.
    const lines = result.stdout.trim().split('\n');
    const header = lines.findIndex((line) => line.startsWith('query'));
    expect(lines[header]).toMatch(
      /^query\s+events\s+seconds\s+events\/s\s+worker CPU s\s+events\/CPU-s\s+equal to SQL$/,
    );
    const rows = lines.slice(header + 1).map((line) => line.split(/\s+/));
    expect(rows.map((row) => row[0])).toEqual(QUERIES);
    for (const row of rows) {
      expect(row[1], context).toBe(String(EVENTS));
      expect(Number(row[2]), context).toBeGreaterThan(0);
      expect(Number(row[4]), context).toBeGreaterThan(0); // the workers did the work
      expect(row.at(-1), context).toBe('yes');
    }
    // Each query compared a non-empty table (an empty table equal to an empty answer proves nothing).
    for (const query of QUERIES) expect(result.stderr, context).toMatch(new RegExp(`${query}: [1-9]\\d* rows, equal`));
  });
});
