// Actor state past half of the heap, on the live path (worker/task-checkpointing.ts): a standalone
// worker under a small heap replays 60,000 users' page lists, far below the budget of 100,000
// active keys but more than its heap holds; full collections past half of the heap make
// checkpoints due that write the state out and keep a quarter of the keys in memory. Before, the
// worker died of heap exhaustion. test/engine-run-cli.test.ts checks the same in `kappa run`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTopic, Producer } from '../client/index.js';
import { buckets, liveRow } from '../protocol/index.js';
import { KappaProcess } from './harness/cli.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const USERS = 60_000;
const VISITS = 8;
/** Users whose final row is checked (reading 60,000 KV rows back would take a minute). */
const SAMPLED = (user: number) => user % 500 === 0;

const nats = useNatsServer();
let dir: string;
let worker: KappaProcess | undefined;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kappa-heap-worker-'));
});
afterAll(async () => {
  await worker?.kill();
  rmSync(dir, { recursive: true, force: true });
});

function pageOf(user: number, visit: number): string {
  return `/a/rather/long/page/path/number/${(user * 7 + visit * 13) % 1_000}/${'x'.repeat(62)}${String(user).padStart(8, '0')}`;
}

it('keeps a worker alive under a small heap by writing actor state out past half of it, with every list whole', async () => {
  await createTopic(nats.nc, { name: 'visits', partitions: 1, key: 'user' });
  const producer = await Producer.forTopic(nats.nc, 'visits');
  const start = Date.UTC(2026, 0, 1);
  for (let user = 0; user < USERS; user++) {
    for (let visit = 0; visit < VISITS; visit++) {
      const ts = start + (user * VISITS + visit) * 10;
      producer.publish({ key: `u${user}`, time: ts, value: { user: `u${user}`, ts, page: pageOf(user, visit) } });
    }
    if (user % 2_000 === 0) await producer.flush();
  }
  await producer.flush();

  const job = join(dir, 'visited-pages.mjs');
  writeFileSync(
    job,
    `export default {
      name: 'visits', version: 'v1', source: { topic: 'visits' }, key: 'user',
      time: (click) => click.ts, watermark: { maxOutOfOrderness: '1s' },
      actor: {
        onEvent(ctx, click) {
          const pages = ctx.value('pages');
          const list = pages.get() ?? [];
          list.push(click.page);
          pages.set(list);
          if (Number(click.user.slice(1)) % 500 === 0) ctx.emit({ visits: list.length, last: click.page.slice(-8) });
        },
      },
    };`,
  );
  worker = new KappaProcess(
    ['worker', '--job', job, '--standalone', '--nats', nats.url, '--state-dir', join(dir, 'state'), '--http-port', '0'],
    { NODE_OPTIONS: '--max-old-space-size=96' },
  );
  const [, port] = await worker.waitForLog(/"httpPort":(\d+)/);
  const status = await pollUntil(
    async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { processed: number }[],
    {
      what: `all ${USERS * VISITS} events processed`,
      until: (tasks) => tasks.length === 1 && tasks[0]!.processed >= USERS * VISITS,
      timeoutMs: 100_000,
      intervalMs: 250,
      giveUpIf: () =>
        worker!.child.exitCode === null && worker!.child.signalCode === null
          ? undefined
          : `the worker exited (${worker!.child.exitCode ?? worker!.child.signalCode})`,
      context: () => worker!.logs.slice(-3_000),
    },
  );
  expect(status[0]!.processed).toBe(USERS * VISITS);
  expect(worker.logs).not.toMatch(/heap out of memory/);
  expect(await worker.stop()).toBe(0);

  // Only the sampled users emit: their rows are the whole table.
  const table = await new Kvm(nats.nc).open(buckets.servingTable('visits', 'v1'));
  const rows = new Map<string, unknown>();
  for await (const name of await table.keys()) {
    const row = liveRow(await table.get(name));
    if (row) rows.set(row.key, row.value);
  }
  const expected = new Map<string, unknown>();
  for (let user = 0; user < USERS; user++)
    if (SAMPLED(user)) expected.set(`u${user}`, { visits: VISITS, last: pageOf(user, VISITS - 1).slice(-8) });
  expect(rows).toEqual(expected);
});
