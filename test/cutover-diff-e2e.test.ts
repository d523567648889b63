// The cutover gate on a diff, end to end with real processes (a coordinator, one worker per job
// version, the built CLI): v1 counts clicks per user in 10 s windows; v2 is the same job with one
// user's clicks counted twice. `kappa diff` and `GET /v1/diff` report exactly that user's final
// windows as changed and every other final row as same (the expected rows computed here from the
// events); `kappa replay --cutover auto --max-changed 0` leaves the alias on v1 while the diff is
// non-zero, `kappa status` and `kappa_version_diff_rows` show the counts, and `kappa cutover
// --max-changed 0` is refused naming them; with a large enough bound (v3, the same fix, replayed
// with `--max-changed 20%`) the auto cutover flips.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../client/producer.js';
import type { VersionDiff } from '../tables/index.js';
import { AliasRegistry } from '../tables/alias-registry.js';
import { kappa, KappaProcess, workerArgs } from './harness/cli.js';
import { leaderStatus } from './harness/cluster-status.js';
import { pollUntil } from './harness/poll.js';
import { useNatsServer } from './harness/use-nats.js';

const PARTITIONS = 4;
const EVENTS = 1_200;
const WINDOW_MS = 10_000;
const DOUBLED = 'user-3';
const V1 = resolve(import.meta.dirname, '../examples/clicks-per-window.mjs');
const START_MS = Date.UTC(2026, 10, 24, 12);

interface Click {
  id: number;
  user: string;
  ts: number;
}

const clicks: Click[] = Array.from({ length: EVENTS }, (_, id) => ({
  id,
  user: `user-${(id * 31) % 13}`,
  ts: START_MS + id * 40,
}));

/** Each (user, window start) with its v1 click count: the reference, computed here. */
function windowsOf(list: Click[]): Map<string, { user: string; start: number; clicks: number }> {
  const windows = new Map<string, { user: string; start: number; clicks: number }>();
  for (const click of list) {
    const start = click.ts - (click.ts % WINDOW_MS);
    const id = `${click.user}/${start}`;
    const window = windows.get(id) ?? { user: click.user, start, clicks: 0 };
    window.clicks++;
    windows.set(id, window);
  }
  return windows;
}

describe('the cutover gate on the diff of two versions', () => {
  const nats = useNatsServer();
  let dir: string;
  const processes: KappaProcess[] = [];
  const job = `gated_${process.pid}_${Date.now() % 100_000}`;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kappa-cutover-diff-'));
  });
  afterAll(async () => {
    await Promise.all(processes.map((child) => child.kill()));
    rmSync(dir, { recursive: true, force: true });
  });

  function spawn(args: string[]): KappaProcess {
    const child = new KappaProcess([...args, '--nats', nats.url]);
    processes.push(child);
    return child;
  }

  /** The example job under this test's name; `doubled` counts that user's clicks twice (the "fix"). */
  function jobModule(version: string, doubled?: string): string {
    const file = join(dir, `${version}.mjs`);
    const aggregate =
      doubled === undefined
        ? ''
        : `, aggregate: { ...base.aggregate, add: (totals, click) => { const once = base.aggregate.add(totals, click); return click.user === '${doubled}' ? base.aggregate.add(once, click) : once; } }`;
    writeFileSync(
      file,
      `import base from ${JSON.stringify(pathToFileURL(V1).href)};\nexport default { ...base, name: '${job}', version: '${version}'${aggregate} };\n`,
    );
    return file;
  }

  function worker(version: string, doubled?: string): KappaProcess {
    return spawn(
      workerArgs({ jobs: [jobModule(version, doubled)], id: `w-${version}`, stateDir: join(dir, version), threads: 1 }),
    );
  }

  async function versionView(version: string) {
    const status = await leaderStatus(nats.nc);
    return status.versions.find((candidate) => candidate.job === job && candidate.version === version);
  }

  let lastSeen: unknown;
  function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
    return pollUntil(probe, {
      what,
      timeoutMs,
      context: () =>
        `last seen: ${JSON.stringify(lastSeen)}\n` + processes.map((p) => p.logs.slice(-1500)).join('\n---\n'),
    });
  }

  it('holds an auto cutover with --max-changed 0 while the diff is non-zero, refuses a manual one naming the counts, and flips with a large enough bound', async () => {
    expect(
      (
        await kappa([
          'topic',
          'create',
          'clicks',
          '--partitions',
          String(PARTITIONS),
          '--key',
          'user',
          '--nats',
          nats.url,
        ])
      ).code,
    ).toBe(0);
    const coordinator = spawn(['coordinator', '--id', 'c1', '--http-port', '0', '--session-timeout', '5s']);
    const [, port] = await coordinator.waitForLog(/"httpPort":(\d+)/);
    worker('v1');
    worker('v2', DOUBLED);
    const producer = await Producer.forTopic(nats.nc, 'clicks');
    for (const click of clicks)
      if (!producer.publish({ key: click.user, time: click.ts, value: click })) await producer.ready();
    await producer.flush();

    expect((await kappa(['start', job, '--version', 'v1', '--nats', nats.url])).code).toBe(0);
    const aliases = await AliasRegistry.open(nats.nc);
    await waitFor('v1 served and caught up', async () => {
      const view = await versionView('v1');
      return view?.served && view.progress === 1 ? true : undefined;
    });

    const replay = await kappa([
      'replay',
      job,
      '--version',
      'v2',
      '--from',
      'earliest',
      '--cutover',
      'auto',
      '--max-changed',
      '0',
      '--nats',
      nats.url,
    ]);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(/at most 0 rows differ from the served version/);

    // The leader's diff: v2 has caught up, its diff against v1 is in, and it is over the bound.
    const held = await waitFor('a diff of v2 against v1 with changed rows', async () => {
      const view = await versionView('v2');
      lastSeen = view;
      return view?.diff !== undefined && view.diff.changed > 0 && view.progress === 1 ? view : undefined;
    });
    expect(held.diff).toMatchObject({ from: 'v1', withinBound: false, onlyInFrom: 0, onlyInTo: 0 });
    // Held: several diffs and ticks later, apps still read v1.
    await sleep(6_000);
    expect((await aliases.get(job))?.version).toBe('v1');
    expect((await versionView('v2'))?.served).toBe(false);

    // `kappa diff --json`: exactly user-3's final windows changed, every other final row the same.
    const diffRun = await kappa([
      'diff',
      job,
      '--from',
      'v1',
      '--to',
      'v2',
      '--limit',
      '1000',
      '--json',
      '--nats',
      nats.url,
    ]);
    expect(diffRun.code, diffRun.stderr).toBe(0);
    const diff = JSON.parse(diffRun.stdout) as VersionDiff;
    expect(typeof diff.finalThroughMs).toBe('number');
    // Both watermarks are at most the last event time minus the 2 s out-of-orderness.
    expect(diff.finalThroughMs!).toBeLessThanOrEqual(clicks.at(-1)!.ts - 2_000);
    const final = [...windowsOf(clicks).values()].filter(
      (window) => window.start + WINDOW_MS - 1 <= diff.finalThroughMs!,
    );
    const doubledWindows = final.filter((window) => window.user === DOUBLED);
    expect(doubledWindows.length).toBeGreaterThan(1);
    expect(diff).toMatchObject({
      compared: final.length,
      same: final.length - doubledWindows.length,
      changed: doubledWindows.length,
      onlyInFrom: 0,
      onlyInTo: 0,
      topKeys: [{ key: DOUBLED, rows: doubledWindows.length }],
    });
    expect(diff.changedRows.map((row) => [row.key, row.start, row.from, row.to])).toEqual(
      doubledWindows
        .sort((a, b) => a.start - b.start)
        .map((window) => [
          DOUBLED,
          window.start,
          { clicks: window.clicks, pages: 0 },
          { clicks: 2 * window.clicks, pages: 0 },
        ]),
    );
    // The human table names the counts and the key.
    const table = await kappa(['diff', job, '--to', 'v2', '--nats', nats.url]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`${doubledWindows.length} of ${final.length} rows differ from v1`));
    expect(table.stdout).toContain(DOUBLED);

    // The query API answers the same on the coordinator.
    const response = await fetch(`http://127.0.0.1:${port}/v1/diff/${job}?from=v1&to=v2&limit=0`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ compared: final.length, changed: doubledWindows.length });
    expect((await fetch(`http://127.0.0.1:${port}/v1/diff/${job}?from=v1`)).status).toBe(400);

    // `kappa status` and the metric show the leader's latest diff.
    const status = await kappa(['status', '--job', job, '--nats', nats.url]);
    expect(status.stdout).toMatch(/held by its diff/);
    expect(status.stdout).toMatch(/0 rows \(exceeded\)/);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`kappa_version_diff_rows\\{job="${job}",version="v2",kind="changed"\\} [1-9]`));
    expect(metrics).toMatch(new RegExp(`kappa_version_diff_rows\\{job="${job}",version="v2",kind="same"\\} [1-9]`));

    // A manual cutover with the same bound is refused, naming the counts.
    const refused = await kappa(['cutover', job, '--version', 'v2', '--max-changed', '0', '--nats', nats.url]);
    expect(refused.code, refused.stdout + refused.stderr).toBe(1);
    expect(refused.stderr).toMatch(
      /\d+ of \d+ rows differ from v1 \(changed \d+, only in v1 0, only in v2 0; same \d+\)/,
    );
    expect(refused.stderr).toMatch(/more than --max-changed 0 rows; most in user-3/);
    expect((await aliases.get(job))?.version).toBe('v1');

    // v2 goes; v3, the same fix, replays with a bound the change is within (one user of 13), and flips.
    expect((await kappa(['stop', job, '--version', 'v2', '--nats', nats.url])).code).toBe(0);
    worker('v3', DOUBLED);
    const v3 = await kappa([
      'replay',
      job,
      '--version',
      'v3',
      '--from',
      'earliest',
      '--cutover',
      'auto',
      '--max-changed',
      '20%',
      '--follow',
      '--nats',
      nats.url,
    ]);
    expect(v3.code, v3.stderr).toBe(0);
    expect((await aliases.get(job))?.version).toBe('v3');
    await producer.close();
  }, 240_000);
});
