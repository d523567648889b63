// Every subject, stream and bucket name Kappa uses comes from this module.
import { ConfigError } from './errors.js';

/**
 * Topic, job, version and worker names become parts of subjects, stream, bucket and table names:
 * keep them plain. The CLI checks them (assertName) and so does every control message (messages.ts).
 */
export const NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `name` is a valid topic, job, version or worker name. */
export function isName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

export function assertName(kind: string, name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new ConfigError(
      `${kind} name ${JSON.stringify(name)} is not valid: expected 1–64 characters of letters, digits, '_' or '-'`,
    );
  }
}

/** A key that is already a valid subject token is used as is; anything else is base64url'ed behind '~'. */
const SAFE_TOKEN = /^[A-Za-z0-9_\-:=+@!#%&()]{1,200}$/;

export function keyToken(key: string): string {
  return SAFE_TOKEN.test(key) ? key : `~${Buffer.from(key, 'utf8').toString('base64url')}`;
}

export const subjects = {
  /** Subject of one event: `<topic>.<partition>.<key-token>`. */
  event: (topic: string, partition: number, key: string) => `${topic}.${partition}.${keyToken(key)}`,
  /** Every subject of one partition. */
  partition: (topic: string, partition: number) => `${topic}.${partition}.>`,
  /** Events that could not be processed, with the reason in a header. */
  deadLetter: (job: string, version: string) => `kappa.dlq.${job}.${version}`,
  /** Events that arrived after their window was purged (DESIGN: never silently lost). */
  lateData: (job: string, version: string) => `kappa.late.${job}.${version}`,
  /** Window and actor outputs of a job version, for the JetStream output sink. */
  output: (job: string, version: string) => `kappa.out.${job}.${version}`,
  /** Control plane: workers → coordinator. */
  workerToCoordinator: 'kappa.ctl.coordinator',
  /** Control plane: coordinator → one worker. */
  coordinatorToWorker: (workerId: string) => `kappa.ctl.worker.${workerId}`,
  /** Requests answered by the leading coordinator (status, start, stop). */
  adminRequest: (verb: string) => `kappa.admin.${verb}`,
} as const;

export const streams = {
  /** One stream per partition: sequence numbers are the partition's offsets. */
  partition: (topic: string, partition: number) => `KAPPA_${topic}_${partition}`,
  deadLetter: 'KAPPA_DLQ',
  lateData: 'KAPPA_LATE',
  output: 'KAPPA_OUT',
} as const;

const SERVING_TABLE_PREFIX = 'kappa_table_';

/** The job and version a serving-table bucket belongs to, or undefined for any other bucket. */
export function parseServingTableBucket(bucket: string): { job: string; version: string } | undefined {
  const match = /^(\d+)_/.exec(bucket.slice(SERVING_TABLE_PREFIX.length));
  if (!bucket.startsWith(SERVING_TABLE_PREFIX) || !match) return undefined;
  const jobStart = SERVING_TABLE_PREFIX.length + match[0].length;
  const jobEnd = jobStart + Number(match[1]);
  const job = bucket.slice(jobStart, jobEnd);
  const version = bucket.slice(jobEnd + 1);
  if (bucket[jobEnd] !== '_' || !isName(job) || !isName(version)) return undefined;
  return { job, version };
}

export const buckets = {
  /** Topic registry: topic name → partition count, replicas. */
  topics: 'kappa_topics',
  /** Leader election key of the coordinators. */
  leader: 'kappa_leader',
  /** Job versions, assignments and epochs. */
  cluster: 'kappa_cluster',
  /** Committed checkpoint manifests, one per task (KV, compare-and-set). */
  checkpoints: 'kappa_checkpoints',
  /** Checkpoint state objects: full snapshots and deltas (Object Store). */
  checkpointData: 'kappa_checkpoint_data',
  /**
   * Serving table of a job version: `kappa_table_<length of job>_<job>_<version>`. Names may hold
   * '_', so the job's length says where it ends (`a_b`/`c` and `a`/`b_c` get different buckets).
   */
  servingTable: (job: string, version: string) => `${SERVING_TABLE_PREFIX}${job.length}_${job}_${version}`,
  /** Alias: job name → the version apps read. */
  aliases: 'kappa_aliases',
  /** Archive segments: sealed ranges of topic partitions (Object Store; archive/segment-store.ts). */
  archive: 'kappa_archive',
  /** Archive catalog: per topic partition, its ordered segments (KV, compare-and-set; archive/catalog.ts). */
  archiveCatalog: 'kappa_archive_catalog',
  /** Standalone workers' leases: one key per job version, so only one standalone replica runs it. */
  standaloneLeases: 'kappa_standalone',
} as const;

/** A task as its checkpoint names see it (`stage` absent for the keyed stage). */
interface CheckpointedTask {
  job: string;
  version: string;
  partition: number;
  stage?: string;
}

/**
 * Where a task's checkpoint lives: its manifest's key in `buckets.checkpoints` and the prefix of its
 * objects in `buckets.checkpointData`; the version forms select every task of a job version (retire).
 */
export const checkpointNames = {
  manifest: (task: CheckpointedTask) =>
    task.stage === undefined
      ? `${task.job}.${task.version}.${task.partition}`
      : `${task.job}.${task.version}.${task.stage}.${task.partition}`,
  versionManifests: (job: string, version: string) => `${job}.${version}.>`,
  objectPrefix: (task: CheckpointedTask) =>
    task.stage === undefined
      ? `${task.job}/${task.version}/${task.partition}/`
      : `${task.job}/${task.version}/${task.stage}/${task.partition}/`,
  versionObjectPrefix: (job: string, version: string) => `${job}/${version}/`,
} as const;
