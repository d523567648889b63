// Joins of two topics through the cluster (README "Joins"): orders (2 partitions, produced by
// order id) and payments (3 partitions, produced by payment id), joined per order id by a window
// join and an interval join, each a job run by a coordinator and a worker pool. A job over two
// topics reads them through its repartition topic, so events of one order from both topics meet
// in one actor whatever partition they came from. Each table must equal the independent nested-
// loop reference (test/reference/joins.ts) over all events: no event is late in its source
// partition here, so the arrival order does not matter, and for the window join exactly the
// windows the keyed stage's watermark (the minimum over all five source partitions) passed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Producer } from '../client/producer.js';
import { partitionOf } from '../protocol/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { leaderStatus } from './harness/cluster-status.js';
import { pollUntil } from './harness/poll.js';
import { untilStagesCaughtUp } from './harness/stages.js';
import { useNatsServer } from './harness/use-nats.js';
import { referenceIntervalJoin, referenceWindowJoin, type JoinInputEvent } from './reference/joins.js';

const OUT_OF_ORDERNESS_MS = 2_000;
const WINDOW_MS = 10_000;
const LOWER_MS = -1_000;
const UPPER_MS = 4_000;
const nats = useNatsServer();
let dir: string;
const processes: KappaProcess[] = [];

interface Order {
  orderId: string;
  amount: number;
  placedAt: number;
}
interface Payment {
  paymentId: string;
  orderId: string;
  amount: number;
  paidAt: number;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-join-'));
});
afterAll(async () => {
  await Promise.all(processes.map((process) => process.kill()));
  rmSync(dir, { recursive: true, force: true });
});

function jobModule(name: string, actor: string): string {
  const file = join(dir, `${name}.mjs`);
  const api = pathToFileURL(resolve(import.meta.dirname, '../dist/index.js')).href;
  writeFileSync(
    file,
    `import { windowJoin, intervalJoin } from ${JSON.stringify(api)};
export default {
  name: '${name}', version: 'v1',
  sources: {
    orders: { topic: 'orders', time: (order) => order.placedAt },
    payments: { topic: 'payments', time: (payment) => payment.paidAt },
  },
  key: 'orderId',
  watermark: { maxOutOfOrderness: '${OUT_OF_ORDERNESS_MS}ms' },
  actor: ${actor},
};
`,
  );
  return file;
}

const JOIN_VALUE = `(order, payment) => ({ order: order.orderId, ordered: order.amount, payment: payment.paymentId, paid: payment.amount })`;
const joinValue = (order: Order, payment: Payment) => ({
  order: order.orderId,
  ordered: order.amount,
  payment: payment.paymentId,
  paid: payment.amount,
});

it('joins two topics in windows and in intervals, as the nested-loop reference does', async () => {
  const start = Date.UTC(2026, 10, 24, 12);
  // Orders 100 ms apart; 0–3 payments each, paid between 1.5 s before and 6 s after the order
  // (some out of every interval, some in another window); every partition up to 1.5 s out of order.
  const orders: Order[] = Array.from({ length: 600 }, (_, index) => ({
    orderId: `o${index}`,
    amount: 10 + (index % 17),
    placedAt: start + index * 100 - ((index * 7919) % 1500),
  }));
  const payments: Payment[] = orders.flatMap((order, index) =>
    Array.from({ length: index % 4 }, (_, nth) => ({
      paymentId: `p${index}-${nth}`,
      orderId: order.orderId,
      amount: order.amount - nth,
      paidAt: order.placedAt - 1_500 + ((index * 31 + nth * 2_917) % 7_500),
    })),
  );
  // Payments are produced in time order with the same bounded jitter as orders.
  payments.sort((a, b) => a.paidAt - b.paidAt);

  for (const [topic, partitions, field] of [
    ['orders', 2, 'orderId'],
    ['payments', 3, 'paymentId'],
  ] as const) {
    const created = await kappa([
      'topic',
      'create',
      topic,
      '--partitions',
      String(partitions),
      '--key',
      field,
      '--nats',
      nats.url,
    ]);
    expect(created.code, created.stderr).toBe(0);
  }
  const windowJob = jobModule(
    'order-payments-window',
    `windowJoin({ left: 'orders', right: 'payments', window: { size: '${WINDOW_MS}ms' }, join: ${JOIN_VALUE} })`,
  );
  const intervalJob = jobModule(
    'order-payments-interval',
    `intervalJoin({ left: 'orders', right: 'payments', lower: ${LOWER_MS}, upper: ${UPPER_MS}, join: ${JOIN_VALUE} })`,
  );
  const spawn = (args: string[]) => {
    const process = new KappaProcess([...args, '--nats', nats.url, '--http-port', '0', '--log-level', 'warn']);
    processes.push(process);
  };
  spawn(['coordinator', '--id', 'c1']);
  spawn([
    'worker',
    '--id',
    'w1',
    '--threads',
    '2',
    '--state-dir',
    join(dir, 'w1'),
    '--job',
    windowJob,
    '--job',
    intervalJob,
  ]);
  await pollUntil(async () => ((await leaderStatus(nats.nc)).workers.length === 1 ? true : undefined), {
    what: 'the worker registered',
    timeoutMs: 30_000,
  });
  for (const job of ['order-payments-window', 'order-payments-interval']) {
    const started = await kappa(['start', job, '--version', 'v1', '--nats', nats.url]);
    expect(started.code, started.stderr + started.stdout).toBe(0);
  }
  const orderProducer = await Producer.forTopic(nats.nc, 'orders');
  for (const order of orders) orderProducer.publish({ key: order.orderId, time: order.placedAt, value: order });
  await orderProducer.close();
  const paymentProducer = await Producer.forTopic(nats.nc, 'payments');
  for (const payment of payments)
    paymentProducer.publish({ key: payment.paymentId, time: payment.paidAt, value: payment });
  await paymentProducer.close();

  // The keyed stage's final watermark: the minimum over the five source partitions'.
  const maxTime = new Map<string, number>();
  for (const order of orders) {
    const at = `orders/${partitionOf(order.orderId, 2)}`;
    maxTime.set(at, Math.max(maxTime.get(at) ?? -Infinity, order.placedAt));
  }
  for (const payment of payments) {
    const at = `payments/${partitionOf(payment.paymentId, 3)}`;
    maxTime.set(at, Math.max(maxTime.get(at) ?? -Infinity, payment.paidAt));
  }
  expect(maxTime.size).toBe(5);
  const watermark = Math.min(...maxTime.values()) - OUT_OF_ORDERNESS_MS;

  const events: JoinInputEvent<Order | Payment>[] = [
    ...orders.map((order) => ({ side: 'left' as const, key: order.orderId, time: order.placedAt, value: order })),
    ...payments.map((payment) => ({
      side: 'right' as const,
      key: payment.orderId,
      time: payment.paidAt,
      value: payment,
    })),
  ];
  // Nothing is late in any order of arrival: the reference is given a bound no event exceeds.
  const noLateness = { maxOutOfOrdernessMs: Number.MAX_SAFE_INTEGER };
  const windowRows = referenceWindowJoin(events, {
    ...noLateness,
    sizeMs: WINDOW_MS,
    offsetMs: 0,
    allowedLatenessMs: 0,
    join: (left, right) => joinValue(left as Order, right as Payment),
  });
  const intervalRows = referenceIntervalJoin(events, {
    ...noLateness,
    lowerMs: LOWER_MS,
    upperMs: UPPER_MS,
    join: (left, right) => joinValue(left as Order, right as Payment),
  });
  const expectedWindow = [...windowRows.rows.values()]
    .filter((row) => Number(row.row.split('_')[0]) + WINDOW_MS - 1 <= watermark)
    .map((row) => ({ key: row.key, row: row.row, value: row.value }));
  const expectedInterval = [...intervalRows.rows.values()].map((row) => ({
    key: row.key,
    row: row.row,
    value: row.value,
  }));
  expect(expectedWindow.length).toBeGreaterThan(200);
  expect(expectedInterval.length).toBeGreaterThan(200);
  // Some payments fall outside their order's interval or window: the joins are not all pairs.
  expect(expectedInterval.length).toBeLessThan(payments.length);

  for (const [job, expected, keyedWatermark] of [
    ['order-payments-window', expectedWindow, watermark],
    ['order-payments-interval', expectedInterval, watermark],
  ] as const) {
    await untilStagesCaughtUp(nats.nc, {
      job,
      version: 'v1',
      sourceTopic: 'orders',
      repartitioned: true,
      keyedWatermark,
      context: () => processes.map((process) => process.logs.slice(-2000)).join('\n---\n'),
      sourceTopics: { 'route-orders': 'orders', 'route-payments': 'payments' },
    });
    const viewed = await kappa(['view', job, '--version', 'v1', '--json', '--nats', nats.url]);
    expect(viewed.code, viewed.stderr).toBe(0);
    const table = viewed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { key: string; row: string; value: unknown });
    const order = (rows: Array<{ key: string; row: string }>) =>
      rows.sort((a, b) => (a.key + '|' + a.row < b.key + '|' + b.row ? -1 : 1));
    expect(order(table), job).toEqual(order([...expected]));
  }
}, 180_000);
