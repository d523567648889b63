// The reprocessing pattern's steps the leader runs (DESIGN "Replay and cutover"): a replaying
// version's progress and ETA, cutover (flip the job's alias once the version has caught up) and
// retire (stop a version apps no longer read, then drop its table and checkpoints after a grace
// period). Tables and the alias live in tables/; checkpoints are deleted by name (buckets); a
// retired version's repartition topic (its own, `rp_…`) is deleted with them, while a stopped
// version keeps it, so a start continues from its checkpoints.
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { Logger } from 'pino';
import { deleteTopic, topicExists } from '../client/topics.js';
import {
  buckets,
  checkpointNames,
  jobVersionKey,
  KappaError,
  repartitionTopic,
  type JobVersionKey,
} from '../protocol/index.js';
import {
  AliasRegistry,
  openServingTables,
  type AliasEntry,
  type ServingTables,
  type TableKind,
  type TableSettings,
} from '../tables/index.js';
import type { JobVersionRecord } from './cluster-state.js';
import type { VersionProgress } from './version-progress.js';

/** ETA is the lag divided by the processing rate over this much recent history. */
const RATE_WINDOW_MS = 15_000;

export class Reprocessing {
  private registry: Promise<AliasRegistry> | undefined;
  private readonly backends = new Map<TableKind, Promise<ServingTables>>();
  /** Recent (time, processed messages) samples per version, for its rate and ETA. */
  private readonly samples = new Map<JobVersionKey, Array<{ atMs: number; processed: number }>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly settings: TableSettings,
    private readonly logger: Logger,
  ) {}

  aliases(): Promise<AliasRegistry> {
    if (!this.registry) {
      this.registry = AliasRegistry.open(this.nc, this.settings.replicas);
      this.registry.catch(() => (this.registry = undefined));
    }
    return this.registry;
  }

  tables(kind: TableKind): Promise<ServingTables> {
    let backend = this.backends.get(kind);
    if (!backend) {
      backend = openServingTables(kind, this.nc, this.settings);
      backend.catch(() => this.backends.delete(kind));
      this.backends.set(kind, backend);
    }
    return backend;
  }

  /** Records a progress sample; returns the ETA in seconds (undefined while the rate is unknown or zero). */
  observe(progress: VersionProgress, nowMs: number): number | undefined {
    if (progress.processedMessages === undefined || progress.lagMessages === undefined) return undefined;
    const key = jobVersionKey(progress);
    const samples = this.samples.get(key) ?? [];
    samples.push({ atMs: nowMs, processed: progress.processedMessages });
    while (samples.length > 2 && samples[0]!.atMs < nowMs - RATE_WINDOW_MS) samples.shift();
    this.samples.set(key, samples);
    if (progress.lagMessages === 0) return 0;
    const first = samples[0]!;
    const elapsedMs = nowMs - first.atMs;
    const rate = elapsedMs > 0 ? ((progress.processedMessages - first.processed) * 1000) / elapsedMs : 0;
    return rate > 0 ? progress.lagMessages / rate : undefined;
  }

  forget(key: JobVersionKey): void {
    this.samples.delete(key);
  }

  /**
   * Flips the job's alias to `version` when it has caught up within `maxLagMessages`: every task of
   * every stage running and the version's lag (summed over its stages) known and within the bound.
   * Refuses with a clear reason otherwise.
   */
  async cutover(
    version: JobVersionRecord,
    progress: VersionProgress | undefined,
    maxLagMessages: number,
  ): Promise<AliasEntry> {
    const name = `${version.job} ${version.version}`;
    if (version.state !== 'running') refuse(`${name} is ${version.state}; only a running version can be cut over to`);
    if (version.table === undefined)
      refuse(`${name} writes no serving table (its sink is not kv, postgres or redis, or no live worker carries it)`);
    if (version.plan === undefined || progress === undefined || progress.taskCount === 0)
      refuse(`${name} has no tasks yet (its topics are not known, or no live worker carries it); wait until it runs`);
    const running = progress!.tasks.running;
    if (running < progress!.taskCount) {
      refuse(
        `${name} has ${running} of ${progress!.taskCount} tasks running; wait until every task is restored and consuming`,
      );
    }
    if (progress!.lagMessages === undefined)
      refuse(`${name}'s lag is not known yet (partition ends not read); try again in a few seconds`);
    if (progress!.lagMessages! > maxLagMessages) {
      refuse(
        `${name} is ${progress!.lagMessages} messages behind${stagesBehind(progress!)} (bound ${maxLagMessages}); wait until it has caught up, or pass a larger --max-lag`,
      );
    }
    const tables = await this.tables(version.table!);
    if (!(await tables.exists(version.job, version.version))) refuse(`${name} has no serving table yet`);
    await tables.setAlias(version.job, version.version);
    const entry = await (await this.aliases()).set(version.job, version.version, version.table!);
    this.logger.info(
      { job: version.job, version: version.version, previous: entry.previous, lagMessages: progress!.lagMessages },
      'cut over: the alias now points at this version',
    );
    return entry;
  }

  /**
   * A job with no alias yet is given one at its first version started (the running version with
   * the earliest start), once that version's table exists, on every backend: apps read v1 (the
   * PostgreSQL view, the Redis key, `kappa view`) without a cutover. Only a job with no alias at
   * all: a later version is served only by a cutover. Returns the new entry, or undefined while
   * there is nothing to point at yet.
   */
  async aliasFirstVersion(job: string, versions: Iterable<JobVersionRecord>): Promise<AliasEntry | undefined> {
    let first: JobVersionRecord | undefined;
    for (const version of versions) {
      if (version.job !== job || version.state !== 'running') continue;
      if (
        !first ||
        version.startedAtMs < first.startedAtMs ||
        (version.startedAtMs === first.startedAtMs && version.version < first.version)
      )
        first = version;
    }
    // Its table kind comes from the workers carrying it, its table from the first task's sinks.
    if (first?.table === undefined) return undefined;
    const tables = await this.tables(first.table);
    if (!(await tables.exists(job, first.version))) return undefined;
    await tables.setAlias(job, first.version);
    const entry = await (await this.aliases()).set(job, first.version, first.table);
    this.logger.info(
      { job, version: first.version, table: first.table },
      'first version of the job: the alias now points at it',
    );
    return entry;
  }

  /** Refuses to retire the version apps read through the alias. */
  async assertRetirable(job: string, version: string): Promise<void> {
    const alias = await (await this.aliases()).get(job);
    if (alias?.version === version)
      refuse(`${job} ${version} is the version apps read (the alias points at it); cut over to another version first`);
  }

  /** Drops a retired version's table, every checkpoint of its tasks and its repartition topic. */
  async dropVersionData(version: JobVersionRecord): Promise<void> {
    // Named by the version whether or not its record still has a plan: the topic is its alone.
    const repartition = repartitionTopic(version.job, version.version);
    if (await topicExists(this.nc, repartition)) await deleteTopic(this.nc, repartition);
    if (version.table !== undefined) await (await this.tables(version.table)).drop(version.job, version.version);
    const manifests = await new Kvm(this.nc).open(buckets.checkpoints).catch(() => undefined);
    if (manifests) {
      const keys: string[] = [];
      for await (const key of await manifests.keys(checkpointNames.versionManifests(version.job, version.version)))
        keys.push(key);
      await Promise.all(keys.map((key) => manifests.purge(key)));
    }
    const objects = await new Objm(this.nc).open(buckets.checkpointData).catch(() => undefined);
    if (objects) {
      const prefix = checkpointNames.versionObjectPrefix(version.job, version.version);
      const names = (await objects.list()).map((info) => info.name).filter((name) => name.startsWith(prefix));
      await Promise.all(names.map((name) => objects.delete(name)));
    }
    this.logger.info(
      { job: version.job, version: version.version, table: version.table, repartitionTopic: repartition },
      'retired version: table, checkpoints and repartition topic dropped',
    );
  }

  async close(): Promise<void> {
    for (const backend of this.backends.values()) await (await backend.catch(() => undefined))?.close();
  }
}

/** `(route-clicks 120, keyed 30)`: which stages the lag is in, when there are several. */
function stagesBehind(progress: VersionProgress): string {
  if (progress.stages.length < 2) return '';
  const parts = progress.stages.map((stage) => `${stage.stage ?? 'keyed'} ${stage.lagMessages ?? '?'}`);
  return ` (${parts.join(', ')})`;
}

function refuse(message: string): never {
  throw new KappaError('ADMIN_REJECTED', message);
}
