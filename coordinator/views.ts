// The query API behind `GET /v1/views/<job>` on every coordinator replica: resolves the job's alias
// (or takes an explicit version) and reads from that version's table, either one key's rows
// (`?key=K`) or one page of the whole table (`?limit=N&after=CURSOR`), never the whole table at once.
// Every query value is checked here: a bad one is a BadRequestError (400) that names it.
import {
  BadRequestError,
  isName,
  KappaError,
  keyProblem,
  ROW_KEY_PATTERN,
  MAX_ROW_KEY_CHARS,
  type ServingTableRow,
} from '../protocol/index.js';
import { DEFAULT_PAGE_ROWS, MAX_PAGE_ROWS } from '../tables/index.js';
import type { Reprocessing } from './reprocessing.js';

export interface ViewRequest {
  job: string;
  /** A version other than the alias's. */
  version?: string;
  /** One key's rows; without it, a page of the table. */
  key?: string;
  limit: number;
  after?: string;
}

export interface ViewAnswer {
  job: string;
  version: string;
  table: string;
  rows: ServingTableRow[];
  /** The cursor of the next page (`?after=`), while the table has more rows. */
  next?: string;
}

const QUERY_PARAMETERS = new Set(['key', 'version', 'limit', 'after']);

/** The request `GET /v1/views/<job>?…` asks for; `job` is the decoded path segment after the prefix. */
export function parseViewRequest(job: string, query: URLSearchParams): ViewRequest {
  if (!isName(job))
    throw new BadRequestError(
      `job name ${describe(job)} is not valid: expected 1–64 characters of letters, digits, '_' or '-'`,
    );
  for (const name of new Set(query.keys())) {
    if (!QUERY_PARAMETERS.has(name))
      throw new BadRequestError(`unknown query parameter ${describe(name)}: expected key, version, limit or after`);
    if (query.getAll(name).length > 1)
      throw new BadRequestError(`query parameter '${name}' given ${query.getAll(name).length} times: expected once`);
  }
  const request: ViewRequest = { job, limit: DEFAULT_PAGE_ROWS };
  const version = query.get('version');
  if (version !== null) {
    if (!isName(version))
      throw new BadRequestError(
        `version ${describe(version)} is not valid: expected 1–64 characters of letters, digits, '_' or '-'`,
      );
    request.version = version;
  }
  const key = query.get('key');
  if (key !== null) {
    const problem = keyProblem(key);
    if (problem !== undefined) throw new BadRequestError(`key is not valid: ${problem}`);
    if (query.has('limit') || query.has('after'))
      throw new BadRequestError(
        `limit and after page a listing of the whole table; with key=, ask for one key's rows without them`,
      );
    request.key = key;
  }
  const limit = query.get('limit');
  if (limit !== null) {
    if (!/^\d{1,7}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_PAGE_ROWS) {
      throw new BadRequestError(
        `limit ${describe(limit)} is not valid: expected a whole number from 1 to ${MAX_PAGE_ROWS}`,
      );
    }
    request.limit = Number(limit);
  }
  const after = query.get('after');
  if (after !== null) {
    if (after.length > MAX_ROW_KEY_CHARS || !ROW_KEY_PATTERN.test(after))
      throw new BadRequestError(`after ${describe(after)} is not a cursor: pass the 'next' of the previous page`);
    request.after = after;
  }
  return request;
}

export async function readView(
  reprocessing: Reprocessing,
  request: ViewRequest,
): Promise<{ status: number; body: ViewAnswer }> {
  const { job } = request;
  const alias = await (await reprocessing.aliases()).get(job);
  const chosen = request.version ?? alias?.version;
  if (chosen === undefined)
    throw new KappaError(
      'TOPIC_NOT_FOUND',
      `job '${job}' has no alias yet: its first version gets one once its table exists (kappa start), or cut over ('kappa cutover ${job} --version V'), or ask for ?version=`,
    );
  // An explicit version other than the alias's is read from a table of the alias's kind (KV when none).
  const table = alias?.table ?? 'kv';
  const tables = await reprocessing.tables(table);
  if (request.key !== undefined)
    return { status: 200, body: { job, version: chosen, table, rows: await tables.read(job, chosen, request.key) } };
  const page = await tables.page(job, chosen, { limit: request.limit, after: request.after });
  return { status: 200, body: { job, version: chosen, table, ...page } };
}

/** A value from a request, quoted and cut short for an error message. */
function describe(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
