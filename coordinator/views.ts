// The query API behind `GET /v1/views/<job>?key=…` on every coordinator replica: resolves the
// job's alias (or takes an explicit version) and reads the rows from that version's table.
import { KappaError, type ServingTableRow } from '../protocol/index.js';
import type { Reprocessing } from './reprocessing.js';

export interface ViewAnswer {
  job: string;
  version: string;
  table: string;
  rows: ServingTableRow[];
}

export async function readView(reprocessing: Reprocessing, job: string, key: string | undefined, version?: string): Promise<{ status: number; body: ViewAnswer }> {
  const alias = await (await reprocessing.aliases()).get(job);
  const chosen = version ?? alias?.version;
  if (chosen === undefined) throw new KappaError('TOPIC_NOT_FOUND', `job '${job}' has no alias yet: cut over to a version first ('kappa cutover ${job} --version V'), or ask for ?version=`);
  // An explicit version other than the alias's is read from a table of the alias's kind (KV when none).
  const table = alias?.table ?? 'kv';
  const rows = await (await reprocessing.tables(table)).read(job, chosen, key);
  return { status: 200, body: { job, version: chosen, table, rows } };
}
