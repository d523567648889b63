// Durable cluster state in KV bucket `buckets.cluster`, so a new leader resumes where the old one
// stopped (DESIGN). Keys: `version.<job>.<version>`, `task.<job>.<version>.<partition>`,
// `worker.<id>`, every part a plain name (no '.'), so no two records share a key. Every write is a compare-and-set on the revision this leader last read or
// wrote: a deposed leader that still writes finds the revision moved by its successor and gets
// a FencedError instead of overwriting newer state.
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import {
  buckets,
  CarriedVersion,
  ConfigError,
  FencedError,
  isName,
  AutoCutover,
  JobPlan,
  jobVersionKey,
  ServingTableKind,
  StartPosition,
  TaskId,
  taskKey,
  type JobVersionKey,
  type TaskKey,
} from '../protocol/index.js';
import { internalReplicas } from '../runtime/index.js';
import type { WorkerId } from './assignment.js';
import type { JobVersionRecord, TaskRecord } from './cluster-state.js';
import type { Registration } from './membership.js';

const JobVersionRecordSchema = z.object({
  job: z.string(),
  version: z.string(),
  topic: z.string().nullable(),
  partitions: z.number().int().positive().nullable(),
  from: StartPosition,
  state: z.enum(['running', 'stopping', 'retired']),
  startedAtMs: z.number(),
  table: ServingTableKind.optional(),
  autoCutover: AutoCutover.optional(),
  retireAtMs: z.number().optional(),
  /** Added with plans: a record stored before them has none until the leader plans it. */
  plan: JobPlan.optional(),
});
const TaskRecordSchema = z.object({ task: TaskId, worker: z.string().nullable(), epoch: z.number().int().min(0) });
const RegistrationSchema = z.object({
  workerId: z.string(),
  capacity: z.number().int().min(1),
  carries: z.array(CarriedVersion),
  httpUrl: z.string().optional(),
});

export interface LoadedClusterState {
  versions: Map<JobVersionKey, JobVersionRecord>;
  tasks: Map<TaskKey, TaskRecord>;
  workers: Registration[];
}

/**
 * The KV key of a record: its kind, then the parts of its id (`job/version[/stage]/partition`, a
 * worker id) joined by '.'. Each part must be a plain name (no '.' or '/') and the count one of
 * those allowed, so two different records never share a key (`a.b`/`c` and `a`/`b.c` cannot both
 * exist, and a staged task has one part more than a keyed one).
 */
function stateKey(kind: 'version' | 'task' | 'worker', id: string, partCounts: readonly number[]): string {
  const parts = id.split('/');
  if (!partCounts.includes(parts.length) || !parts.every(isName)) {
    throw new ConfigError(
      `cluster state ${kind} id ${JSON.stringify(id)} is not ${partCounts.join(' or ')} valid name(s) joined by '/' (1–64 letters, digits, '_' or '-' each)`,
    );
  }
  return `${kind}.${parts.join('.')}`;
}

const versionKvKey = (key: JobVersionKey) => stateKey('version', key, [2]);
const taskKvKey = (key: TaskKey) => stateKey('task', key, [3, 4]);
const workerKvKey = (id: WorkerId) => stateKey('worker', id, [1]);

/** The cluster-state bucket, created when it does not exist. */
function openClusterBucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(buckets.cluster, { history: 1, replicas: internalReplicas() });
}

export class ClusterStore {
  /** KV key → revision this process last read or wrote. */
  private readonly revisions = new Map<string, number>();

  private constructor(
    private readonly nc: NatsConnection,
    private kv: KV,
  ) {}

  static async open(nc: NatsConnection): Promise<ClusterStore> {
    return new ClusterStore(nc, await openClusterBucket(nc));
  }

  /** Reads everything; records that fail validation are reported, never silently used. */
  async load(): Promise<LoadedClusterState> {
    this.revisions.clear();
    const state: LoadedClusterState = { versions: new Map(), tasks: new Map(), workers: [] };
    const keys: string[] = [];
    let listing;
    try {
      listing = await this.kv.keys();
    } catch (error) {
      // The bucket's stream is not there: a create that timed out while the JetStream meta group
      // had no quorum can be answered as done and never applied (seen with 2 of 3 nodes stopped).
      // Creating it again never removes anything; without it this leader would retry forever.
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
      this.kv = await openClusterBucket(this.nc);
      listing = await this.kv.keys();
    }
    for await (const key of listing) keys.push(key);
    for (const key of keys) {
      const entry = await this.kv.get(key);
      if (!entry || entry.operation !== 'PUT') continue;
      this.revisions.set(key, entry.revision);
      const value: unknown = entry.json();
      if (key.startsWith('version.')) {
        const record = JobVersionRecordSchema.parse(value);
        state.versions.set(jobVersionKey(record), record);
      } else if (key.startsWith('task.')) {
        const record = TaskRecordSchema.parse(value);
        state.tasks.set(taskKey(record.task), record);
      } else if (key.startsWith('worker.')) {
        state.workers.push(RegistrationSchema.parse(value));
      }
    }
    return state;
  }

  async putVersion(record: JobVersionRecord): Promise<void> {
    return this.put(versionKvKey(jobVersionKey(record)), record);
  }

  async deleteVersion(key: JobVersionKey): Promise<void> {
    return this.delete(versionKvKey(key));
  }

  async putTask(record: TaskRecord): Promise<void> {
    return this.put(taskKvKey(taskKey(record.task)), record);
  }

  async deleteTask(key: TaskKey): Promise<void> {
    return this.delete(taskKvKey(key));
  }

  async putWorker(registration: Registration): Promise<void> {
    return this.put(workerKvKey(registration.workerId), registration);
  }

  async deleteWorker(id: WorkerId): Promise<void> {
    return this.delete(workerKvKey(id));
  }

  private async put(key: string, value: unknown): Promise<void> {
    const known = this.revisions.get(key);
    const body = JSON.stringify(value);
    try {
      const revision = known === undefined ? await this.kv.create(key, body) : await this.kv.update(key, body, known);
      this.revisions.set(key, revision);
    } catch (error) {
      this.revisions.delete(key);
      throw new FencedError(
        `cluster state key '${key}' changed since revision ${known ?? 'absent'}: another leader wrote it (${(error as Error).message})`,
      );
    }
  }

  private async delete(key: string): Promise<void> {
    const known = this.revisions.get(key);
    if (known === undefined) return;
    try {
      await this.kv.delete(key, { previousSeq: known });
    } catch (error) {
      throw new FencedError(
        `cluster state key '${key}' changed since revision ${known}: another leader wrote it (${(error as Error).message})`,
      );
    } finally {
      this.revisions.delete(key);
    }
  }
}
