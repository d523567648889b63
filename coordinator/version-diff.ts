// The evidence for a cutover: what a new job version changes against the one apps read. The rows
// are compared by tables/diff.ts; this module says which rows are final for each version (from the
// leader's status: the watermarks of its keyed tasks), judges a diff against a `--max-changed`
// bound, and keeps, on the leader, the latest diff of each `--cutover auto --max-changed` replay
// (`VersionDiffWatch`): recomputed every few seconds once the version has caught up, off the
// leader's one-at-a-time queue (a large table takes seconds to minutes), shown by `kappa status`,
// exported as `kappa_version_diff_rows` and consulted by the auto cutover (reprocessing-tick.ts).
import type { Logger } from 'pino';
import {
  BadRequestError,
  isName,
  jobVersionKey,
  KappaError,
  keyProblem,
  type ChangeBound,
  type ClusterStatus,
  type Clock,
  type JobVersionKey,
  type VersionDiffSummary,
} from '../protocol/index.js';
import {
  diffVersions,
  type AliasEntry,
  type DiffCounts,
  type DiffOptions,
  type ServingTables,
  type TableKind,
  type VersionDiff,
} from '../tables/index.js';
import type { JobVersionRecord } from './cluster-state.js';
import type { VersionProgress } from './version-progress.js';

/** A replay with a bound is diffed again this long after its last diff began, once caught up. */
export const DIFF_INTERVAL_MS = 5_000;

/**
 * How far a version's windows are final, from the status: the smallest watermark of its keyed
 * tasks (a window of a key is final once its partition's watermark passed it; the minimum is a
 * safe bound for every partition). Undefined for a version with no task listed (stopped or
 * retired: its table no longer changes, every row counts as it stands); null while none of its
 * keyed tasks has a watermark yet.
 */
export function versionWatermark(status: ClusterStatus, job: string, version: string): number | null | undefined {
  let watermark: number | null | undefined;
  for (const task of status.tasks) {
    if (task.job !== job || task.version !== version || task.stage !== undefined) continue;
    if (task.watermark === null) watermark ??= null;
    else
      watermark = watermark === null || watermark === undefined ? task.watermark : Math.min(watermark, task.watermark);
  }
  return watermark;
}

/** The table kind the status names for a version, if it lists it with one. */
export function tableKindOf(status: ClusterStatus, job: string, version: string): TableKind | undefined {
  return status.versions.find((view) => view.job === job && view.version === version)?.table ?? undefined;
}

/**
 * Diffs two versions of `job` as the status describes them (table kinds, watermarks); a version
 * the status does not list (stopped, retired) is read from a `fallbackKind` table, every row as
 * it stands. `tablesOf` opens one backend per kind, so two versions in one PostgreSQL are joined there.
 */
export async function diffFromStatus(
  status: ClusterStatus,
  tablesOf: (kind: TableKind) => Promise<ServingTables>,
  request: { job: string; from: string; to: string } & DiffOptions,
  fallbackKind: TableKind = 'kv',
): Promise<VersionDiff> {
  const { job, from, to, ...options } = request;
  const side = async (version: string) => ({
    tables: await tablesOf(tableKindOf(status, job, version) ?? fallbackKind),
    version,
    watermarkMs: versionWatermark(status, job, version),
  });
  return diffVersions(job, await side(from), await side(to), options);
}

/** Rows that differ: changed, or in one version only. */
export function differingRows(counts: DiffCounts): number {
  return counts.changed + counts.onlyInFrom + counts.onlyInTo;
}

export function withinBound(counts: DiffCounts, bound: ChangeBound): boolean {
  const differing = differingRows(counts);
  if ('rows' in bound) return differing <= bound.rows;
  return counts.compared === 0 ? true : (differing * 100) / counts.compared <= bound.percent;
}

export function describeBound(bound: ChangeBound): string {
  return 'rows' in bound ? `${bound.rows} rows` : `${bound.percent}%`;
}

/** `12 of 400 rows differ from v1 (changed 10, only in v1 2, only in v2 0; same 388)`. */
export function describeCounts(counts: DiffCounts, from: string, to: string): string {
  return (
    `${differingRows(counts)} of ${counts.compared} rows differ from ${from} ` +
    `(changed ${counts.changed}, only in ${from} ${counts.onlyInFrom}, only in ${to} ${counts.onlyInTo}; same ${counts.same})`
  );
}

/** `--max-changed N|P%`: a row count or a percentage of the rows compared; a string says what is wrong. */
export function parseChangeBound(raw: string): ChangeBound | string {
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(raw);
  if (percent) {
    const value = Number(percent[1]);
    return value <= 100 ? { percent: value } : `a percentage is at most 100%, found ${JSON.stringify(raw)}`;
  }
  if (/^\d{1,15}$/.test(raw)) return { rows: Number(raw) };
  return `expected a row count (e.g. 0, 25) or a percentage of the rows compared (e.g. 0.5%), found ${JSON.stringify(raw)}`;
}

// ---- the query API: GET /v1/diff/<job>?from=V1&to=V2[&key=K][&limit=N] --------------------------

export interface DiffRequest {
  job: string;
  /** Absent: the version the alias points at. */
  from?: string;
  to: string;
  key?: string;
  limit: number;
}

/** Differing rows a diff returns when the reader does not say, and the most it may ask for. */
export const DEFAULT_DIFF_ROWS = 20;
export const MAX_DIFF_ROWS = 1_000;

const DIFF_PARAMETERS = new Set(['from', 'to', 'key', 'limit']);

/** The request `GET /v1/diff/<job>?…` asks for; a bad value is a BadRequestError (400) naming it. */
export function parseDiffRequest(job: string, query: URLSearchParams): DiffRequest {
  if (!isName(job)) throw new BadRequestError(`job name ${quoted(job)} is not valid: expected 1–64 of [A-Za-z0-9_-]`);
  for (const parameter of new Set(query.keys())) {
    if (!DIFF_PARAMETERS.has(parameter))
      throw new BadRequestError(`unknown query parameter ${quoted(parameter)}: expected from, to, key or limit`);
    if (query.getAll(parameter).length > 1)
      throw new BadRequestError(
        `query parameter '${parameter}' given ${query.getAll(parameter).length} times: expected once`,
      );
  }
  const version = (parameter: string) => {
    const value = query.get(parameter);
    if (value !== null && !isName(value))
      throw new BadRequestError(`${parameter} ${quoted(value)} is not a version name: expected 1–64 of [A-Za-z0-9_-]`);
    return value ?? undefined;
  };
  const from = version('from');
  const to = version('to');
  if (to === undefined) throw new BadRequestError('to= is missing: the version to compare with the served one');
  const request: DiffRequest = { job, to, limit: DEFAULT_DIFF_ROWS, ...(from === undefined ? {} : { from }) };
  const key = query.get('key');
  if (key !== null) {
    const problem = keyProblem(key);
    if (problem !== undefined) throw new BadRequestError(`key is not valid: ${problem}`);
    request.key = key;
  }
  const limit = query.get('limit');
  if (limit !== null) {
    if (!/^\d{1,7}$/.test(limit) || Number(limit) > MAX_DIFF_ROWS)
      throw new BadRequestError(
        `limit ${quoted(limit)} is not valid: expected a whole number from 0 to ${MAX_DIFF_ROWS}`,
      );
    request.limit = Number(limit);
  }
  return request;
}

/** Where a diff reads from: the leader's status, one backend per table kind, the job's alias. */
export interface DiffSource {
  status(job: string): Promise<ClusterStatus>;
  tables(kind: TableKind): Promise<ServingTables>;
  alias(job: string): Promise<AliasEntry | undefined>;
}

/** `GET /v1/diff/<job>` and `kappa diff`: `to` against `from`, or against the served version. */
export async function readDiff(source: DiffSource, request: DiffRequest): Promise<VersionDiff> {
  const { job } = request;
  const alias = await source.alias(job);
  const from = request.from ?? alias?.version;
  if (from === undefined)
    throw new KappaError('TOPIC_NOT_FOUND', `job '${job}' has no alias yet: name the version to compare with (from=)`);
  return diffFromStatus(
    await source.status(job),
    (kind) => source.tables(kind),
    { job, from, to: request.to, limit: request.limit, ...(request.key === undefined ? {} : { key: request.key }) },
    alias?.table ?? 'kv',
  );
}

function quoted(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

// ---- the leader's latest diff of each bounded replay --------------------------------------------

export interface DiffWatchDependencies {
  tables(kind: TableKind): Promise<ServingTables>;
  /** The leader's status of one job (undefined when it stopped leading). */
  status(job: string): ClusterStatus | undefined;
  clock: Clock;
  logger: Logger;
  intervalMs?: number;
}

/** The latest diff of a version, with its labels (for the metric). */
export interface LatestDiff {
  job: string;
  version: string;
  summary: VersionDiffSummary;
}

export class VersionDiffWatch {
  /** Per `--max-changed` replay: its latest diff against the version served when it began. */
  readonly latest = new Map<JobVersionKey, LatestDiff>();
  private readonly inFlight = new Set<JobVersionKey>();
  private readonly startedAtMs = new Map<JobVersionKey, number>();

  constructor(private readonly dependencies: DiffWatchDependencies) {}

  /**
   * From the leader's tick: begins (without awaiting it) a diff of every running version whose
   * auto cutover has a `maxChanged` bound, once it has caught up, every `intervalMs`; forgets
   * versions that no longer have one (cut over, stopped).
   */
  refresh(
    versions: Iterable<JobVersionRecord>,
    progress: ReadonlyMap<JobVersionKey, VersionProgress>,
    aliases: ReadonlyMap<string, string>,
  ): void {
    const { clock, intervalMs = DIFF_INTERVAL_MS } = this.dependencies;
    const bounded = new Set<JobVersionKey>();
    for (const version of versions) {
      const bound = version.autoCutover?.maxChanged;
      if (version.state !== 'running' || bound === undefined) continue;
      const key = jobVersionKey(version);
      bounded.add(key);
      const served = aliases.get(version.job);
      if (served === undefined || served === version.version) continue;
      if (!caughtUp(progress.get(key), version.autoCutover!.maxLagMessages)) continue;
      if (this.inFlight.has(key) || clock.now() - (this.startedAtMs.get(key) ?? -Infinity) < intervalMs) continue;
      this.inFlight.add(key);
      this.startedAtMs.set(key, clock.now());
      void this.compute(version, served, bound).finally(() => this.inFlight.delete(key));
    }
    for (const key of [...this.latest.keys(), ...this.startedAtMs.keys()]) {
      if (bounded.has(key)) continue;
      this.latest.delete(key);
      this.startedAtMs.delete(key);
    }
  }

  /**
   * Whether `version`'s auto cutover may flip the alias away from `served`: its latest diff was
   * taken against `served` and is within its bound. A version with no bound, or nothing served to
   * compare with, is not held.
   */
  allows(version: JobVersionRecord, served: string | undefined): boolean {
    if (version.autoCutover?.maxChanged === undefined || served === undefined || served === version.version)
      return true;
    const latest = this.latest.get(jobVersionKey(version))?.summary;
    return latest !== undefined && latest.from === served && latest.withinBound;
  }

  private async compute(version: JobVersionRecord, served: string, bound: ChangeBound): Promise<void> {
    const { job } = version;
    const { logger, clock } = this.dependencies;
    const status = this.dependencies.status(job);
    if (status === undefined) return;
    try {
      const diff = await diffFromStatus(
        status,
        (kind) => this.dependencies.tables(kind),
        { job, from: served, to: version.version, limit: 0, topKeys: 3 },
        version.table ?? 'kv',
      );
      const summary: VersionDiffSummary = {
        from: served,
        compared: diff.compared,
        same: diff.same,
        changed: diff.changed,
        onlyInFrom: diff.onlyInFrom,
        onlyInTo: diff.onlyInTo,
        ...(diff.finalThroughMs === undefined ? {} : { finalThroughMs: diff.finalThroughMs }),
        at: new Date(clock.now()).toISOString(),
        withinBound: withinBound(diff, bound),
      };
      const key = jobVersionKey(version);
      // A version cut over or stopped while this ran is no longer watched.
      if (!this.startedAtMs.has(key)) return;
      this.latest.set(key, { job, version: version.version, summary });
      if (!summary.withinBound)
        logger.info(
          { job, version: version.version, ...summary, maxChanged: describeBound(bound), topKeys: diff.topKeys },
          `auto cutover held: ${describeCounts(diff, served, version.version)}, more than --max-changed ${describeBound(bound)}`,
        );
    } catch (error) {
      logger.warn({ err: error, job, version: version.version }, 'diff against the served version failed; retrying');
    }
  }
}

/** Caught up as the auto cutover means it: every task running and the lag within the bound. */
function caughtUp(progress: VersionProgress | undefined, maxLagMessages: number): boolean {
  return (
    progress !== undefined &&
    progress.taskCount > 0 &&
    progress.tasks.running >= progress.taskCount &&
    progress.lagMessages !== undefined &&
    progress.lagMessages <= maxLagMessages
  );
}
