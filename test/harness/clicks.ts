// The click events of the cluster tests and the batch-reference form of the example click jobs
// (examples/clicks-per-window*.mjs: tumbling 10 s, 2 s out of order, 5 s allowed lateness).
import { pathToFileURL } from 'node:url';
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
