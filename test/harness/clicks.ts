// The click events of the cluster tests and the batch-reference form of the example click jobs
// (examples/clicks-per-window*.mjs: tumbling 10 s, 2 s out of order, 5 s allowed lateness).
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { expect } from 'vitest';
import { kappa } from './cli.js';
import type { ReferenceJob } from '../reference/batch-windows.js';

export interface Click {
  id: number;
  user: string;
  ts: number;
  page?: string;
}

/** The reference job of an example click module, with that module's own aggregate functions. */
export async function clicksReference(moduleFile: string): Promise<ReferenceJob<Click, unknown, unknown>> {
  const module = (await import(pathToFileURL(moduleFile).href)) as {
    default: { aggregate: ReferenceJob<Click, unknown, unknown>['aggregate'] };
  };
  return {
    window: { kind: 'tumbling', sizeMs: 10_000 },
    maxOutOfOrdernessMs: 2_000,
    allowedLatenessMs: 5_000,
    aggregate: module.default.aggregate,
    key: (click) => click.user,
    time: (click) => click.ts,
  };
}

/** Clicks `from` ≤ id < `to`, 100 ms apart in event time from 2026-11-24 12:00, some up to 1.5 s out of order. */
export function clickRange(from: number, to: number): Click[] {
  const start = Date.UTC(2026, 10, 24, 12);
  const clicks: Click[] = [];
  for (let id = from; id < to; id++)
    clicks.push({ id, user: `user-${(id * 13) % 17}`, ts: start + id * 100 - ((id * 7919) % 1500) });
  return clicks;
}

/**
 * Click `id` of the replay tests: 40 ms apart in event time from 2026-11-24 12:00, up to 1.5 s out
 * of order, every 71st 20 s behind (past the examples' 5 s lateness: late data), a page on two in three.
 */
export function clickWithLateOnes(id: number): Click {
  const ts = Date.UTC(2026, 10, 24, 12) + id * 40 - ((id * 7919) % 1500) - (id % 71 === 0 ? 20_000 : 0);
  return { id, user: `user-${(id * 31) % 13}`, ts, ...(id % 3 ? { page: `/p${id % 5}` } : {}) };
}

/** Writes the clicks as JSON lines to `file` and publishes them with `kappa produce` (keyed by user); fails the test unless it exits 0. */
export async function produceClicks(
  natsUrl: string,
  file: string,
  clicks: readonly Click[],
  topic = 'clicks',
): Promise<void> {
  writeFileSync(file, clicks.map((click) => JSON.stringify(click)).join('\n') + '\n');
  const produced = await kappa(['produce', topic, '--file', file, '--key', 'user', '--time', 'ts', '--nats', natsUrl]);
  expect(produced.code, produced.stderr).toBe(0);
}
