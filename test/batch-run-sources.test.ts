// `kappa run` of jobs that need the repartition stage, as a user meets them: a job keyed by `user`
// over a file produced by `page` (the example of README "Keys and partitions": read directly, each
// partition would count its own share of a user and the rows would overwrite each other), and a
// job over two topics with one file each. Each table against a group-by computed here.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kappa } from './harness/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'kappa-run-sources-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MINUTE = 60_000;
const base = Date.UTC(2026, 0, 1);
const usersJob = join(dir, 'users.mjs');
const ordersJob = join(dir, 'orders.mjs');

beforeAll(() => {
  writeFileSync(
    usersJob,
    `export default {
      name: 'views-per-user', version: 'v1', source: { topic: 'views' },
      key: 'user',
      time: (view) => view.at,
      watermark: { maxOutOfOrderness: '10s' },
      window: { kind: 'tumbling', size: '1m' },
      aggregate: { init: () => 0, add: (count) => count + 1 },
    };`,
  );
  writeFileSync(
    ordersJob,
    `export default {
      name: 'spend', version: 'v1',
      sources: { orders: { topic: 'orders' }, payments: { topic: 'payments' } },
      key: 'user',
      time: (event) => event.at,
      watermark: { maxOutOfOrderness: '10s' },
      window: { kind: 'tumbling', size: '1m' },
      aggregate: {
        init: () => ({ ordered: 0, paid: 0 }),
        add: (totals, event, source) =>
          source === 'orders'
            ? { ...totals, ordered: totals.ordered + event.amount }
            : { ...totals, paid: totals.paid + event.amount },
      },
    };`,
  );
});

interface Row {
  key: string;
  start: number;
  end: number;
  value: unknown;
}

function rowsOf(stdout: string): Row[] {
  return stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Row);
}

function windowStart(at: number): number {
  return Math.floor(at / MINUTE) * MINUTE;
}

/** Group-by: per (key, minute), the fold of the events in it; rows sorted as `kappa run` prints them. */
function groupBy<E extends { at: number }, V>(
  events: readonly E[],
  keyOf: (event: E) => string,
  fold: (value: V | undefined, event: E) => V,
): Row[] {
  const rows = new Map<string, Row>();
  for (const event of events) {
    const start = windowStart(event.at);
    const id = `${keyOf(event)}|${start}`;
    const row = rows.get(id) ?? { key: keyOf(event), start, end: start + MINUTE, value: undefined };
    row.value = fold(row.value as V | undefined, event);
    rows.set(id, row);
  }
  return [...rows.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.start - b.start));
}

describe('kappa run through the repartition stage', () => {
  // 600 views, 2 a second over 5 minutes, by 7 users on 5 pages, a few seconds out of order.
  const views = Array.from({ length: 600 }, (_, index) => ({
    page: `page-${index % 5}`,
    user: `u${(index * 3) % 7}`,
    at: base + index * 500 - (index % 4) * 1_000,
  }));
  const expected = groupBy(
    views,
    (view) => view.user,
    (count: number | undefined) => (count ?? 0) + 1,
  );

  for (const partitions of [1, 4, 16]) {
    it(`counts per user a file produced by page, with P = ${partitions}`, async () => {
      const input = join(dir, `views-${partitions}.jsonl`);
      writeFileSync(input, views.map((view) => JSON.stringify(view)).join('\n') + '\n');
      const result = await kappa([
        'run',
        usersJob,
        '--input',
        input,
        '--key',
        'page',
        '--partitions',
        String(partitions),
      ]);
      expect(result.code).toBe(0);
      expect(rowsOf(result.stdout)).toEqual(expected);
      expect(result.stderr).toContain(
        `read views (${partitions} partitions) through a repartition stage into ${partitions} keyed partitions`,
      );
      expect(result.stderr).toContain('kappa run: 600 events');
    });
  }

  it('reads a file produced by the job key directly, and takes --key-partitions for the keyed stage', async () => {
    const input = join(dir, 'views.jsonl');
    writeFileSync(input, views.map((view) => JSON.stringify(view)).join('\n') + '\n');
    const direct = await kappa(['run', usersJob, '--input', input, '--key', 'user', '--partitions', '4']);
    expect(direct.code).toBe(0);
    expect(direct.stderr).not.toContain('repartition');
    expect(rowsOf(direct.stdout)).toEqual(expected);
    const rekeyed = await kappa([
      'run',
      usersJob,
      '--input',
      input,
      '--key',
      'page',
      '--partitions',
      '2',
      '--key-partitions',
      '3',
    ]);
    expect(rekeyed.code).toBe(0);
    expect(rekeyed.stderr).toContain('read views (2 partitions) through a repartition stage into 3 keyed partitions');
    expect(rowsOf(rekeyed.stdout)).toEqual(expected);
  });

  // Orders and payments of 5 users, produced by order id; the job sums both per user and minute.
  const orders = Array.from({ length: 300 }, (_, index) => ({
    order: `o${index}`,
    user: `u${index % 5}`,
    amount: 1 + (index % 9),
    at: base + index * 1_000,
  }));
  // Most orders paid 2–8 seconds later, in their own file and order.
  const payments = orders
    .filter((_, index) => index % 7 !== 0)
    .map((order, index) => ({ ...order, amount: order.amount * 10, at: order.at + 2_000 + (index % 4) * 2_000 }));
  const expectedSpend = groupBy(
    [
      ...orders.map((order) => ({ ...order, source: 'orders' })),
      ...payments.map((paid) => ({ ...paid, source: 'paid' })),
    ],
    (event) => event.user,
    (totals: { ordered: number; paid: number } | undefined, event) => {
      const sum = totals ?? { ordered: 0, paid: 0 };
      return event.source === 'orders'
        ? { ...sum, ordered: sum.ordered + event.amount }
        : { ...sum, paid: sum.paid + event.amount };
    },
  );

  it('runs a job over two topics from one file per source', async () => {
    const ordersFile = join(dir, 'orders.jsonl');
    const paymentsFile = join(dir, 'payments.jsonl');
    writeFileSync(ordersFile, orders.map((order) => JSON.stringify(order)).join('\n') + '\n');
    writeFileSync(paymentsFile, payments.map((paid) => JSON.stringify(paid)).join('\n') + '\n');
    const result = await kappa([
      'run',
      ordersJob,
      '--input',
      `orders=${ordersFile}`,
      '--input',
      `payments=${paymentsFile}`,
      '--key',
      'order',
      '--partitions',
      '3',
    ]);
    expect(result.stderr).toContain(
      'read orders (3 partitions), payments (3 partitions) through a repartition stage into 3 keyed partitions',
    );
    expect(result.stderr).toContain(`kappa run: ${orders.length + payments.length} events`);
    expect(result.code).toBe(0);
    expect(rowsOf(result.stdout)).toEqual(expectedSpend);
  });

  it('asks for a file per source, by name', async () => {
    const ordersFile = join(dir, 'orders-only.jsonl');
    writeFileSync(ordersFile, JSON.stringify(orders[0]) + '\n');
    const unnamed = await kappa(['run', ordersJob, '--input', ordersFile]);
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toContain('--input orders=FILE --input payments=FILE');
    const missing = await kappa(['run', ordersJob, '--input', `orders=${ordersFile}`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("no --input for source 'payments' of job spend");
    const unknown = await kappa(['run', ordersJob, '--input', `refunds=${ordersFile}`]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("job spend has no source 'refunds' (its sources: orders, payments)");
  });
});
