// What the leader holds in memory while it leads: the stored cluster state (job versions and task
// records, kept in `buckets.cluster` by ClusterStore), the reconcile loop's volatile state, and
// what it derives from heartbeats (each running version's progress, the version each job's alias
// serves). Every change is written to the store first, then to memory: a CAS failure (a deposed
// leader) leaves memory as the store last confirmed it.
import { jobVersionKey, type JobVersionKey, type TaskKey } from '../protocol/index.js';
import { emptyTransit, type JobVersionRecord, type TaskRecord } from './cluster-state.js';
import type { ClusterStore } from './cluster-store.js';
import type { Registration } from './membership.js';
import type { ProgressWithEta } from './status-view.js';

/** The job versions as stored, and how to change one: what the admin verbs need of the state. */
export interface VersionRecords {
  readonly versions: ReadonlyMap<JobVersionKey, JobVersionRecord>;
  putVersion(record: JobVersionRecord): Promise<void>;
}

export class LeaderState implements VersionRecords {
  versions = new Map<JobVersionKey, JobVersionRecord>();
  tasks = new Map<TaskKey, TaskRecord>();
  /** Sends and releases not yet reflected in the task records (cluster-state.ts). */
  transit = emptyTransit();
  /** True while leading with the stored state loaded. */
  loaded = false;
  /** Latest progress and ETA of each running version, for status and cutover. */
  progress = new Map<JobVersionKey, ProgressWithEta>();
  /** Job → the version its alias points at, refreshed by the reprocessing tick. */
  aliases = new Map<string, string>();

  constructor(readonly store: ClusterStore) {}

  /** Reads the stored state; returns the stored worker registrations. */
  async load(): Promise<Registration[]> {
    const state = await this.store.load();
    this.versions = state.versions;
    this.tasks = state.tasks;
    this.loaded = true;
    return state.workers;
  }

  /** Forgets the in-memory view (leadership changed, or a write failed): it is reloaded before use. */
  unload(): void {
    this.loaded = false;
    this.transit = emptyTransit();
  }

  async putVersion(record: JobVersionRecord): Promise<void> {
    await this.store.putVersion(record);
    this.versions.set(jobVersionKey(record), record);
  }

  /** Deletes a version and its task records (their epochs matter only while its checkpoints exist). */
  async deleteVersionAndTasks(key: JobVersionKey): Promise<void> {
    await this.store.deleteVersion(key);
    this.versions.delete(key);
    for (const [task, record] of [...this.tasks]) {
      if (jobVersionKey(record.task) !== key) continue;
      await this.store.deleteTask(task);
      this.tasks.delete(task);
    }
  }
}
