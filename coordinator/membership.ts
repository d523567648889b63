// Which workers are alive, what they can run and what they report running. A worker joins with
// `worker.register`, stays alive by heartbeating, and is dead once silent past the session
// timeout (or at once on `worker.leave`). Every coordinator replica keeps this table from the
// messages it hears, so a follower that becomes leader already knows who is alive.
import {
  jobVersionKey,
  taskKey,
  type Clock,
  type MessageOf,
  type TaskKey,
  type TaskStatus,
} from '../protocol/index.js';
import type { WorkerId, WorkerSlot } from './assignment.js';
import type { LiveWorker } from './cluster-state.js';

export type Registration = Omit<MessageOf<'worker.register'>, 'type'>;

export interface Member {
  registration: Registration;
  slot: WorkerSlot;
  lastHeardMs: number;
  reported: Map<TaskKey, TaskStatus> | undefined;
  reportedAtMs: number;
}

export class Membership {
  private readonly members = new Map<WorkerId, Member>();
  /** Every registration heard and not left: a worker declared dead that heartbeats again revives. */
  private readonly known = new Map<WorkerId, Registration>();

  constructor(
    private readonly sessionTimeoutMs: number,
    private readonly clock: Clock,
  ) {}

  /** Adds or refreshes a worker; returns true when its capacity or carried versions changed. */
  register(registration: Registration): boolean {
    this.known.set(registration.workerId, registration);
    const existing = this.members.get(registration.workerId);
    const slot: WorkerSlot = {
      id: registration.workerId,
      capacity: registration.capacity,
      carries: new Set(registration.carries.map(jobVersionKey)),
    };
    const changed =
      existing === undefined ||
      existing.slot.capacity !== slot.capacity ||
      existing.slot.carries.size !== slot.carries.size ||
      [...slot.carries].some((key) => !existing.slot.carries.has(key));
    this.members.set(registration.workerId, {
      registration,
      slot,
      lastHeardMs: this.clock.now(),
      reported: existing?.reported,
      reportedAtMs: existing?.reportedAtMs ?? 0,
    });
    return changed;
  }

  /**
   * Workers the store knows but this replica has not heard from (it just became leader): they
   * get a full session timeout from now to heartbeat before they count as dead, so a leader
   * change moves nothing.
   */
  adopt(registrations: readonly Registration[]): void {
    for (const registration of registrations) {
      if (!this.known.has(registration.workerId)) this.register(registration);
    }
  }

  /** Records a heartbeat; false for a worker that never registered here. */
  heartbeat(workerId: WorkerId, tasks: readonly TaskStatus[]): boolean {
    const registration = this.known.get(workerId);
    if (registration !== undefined && !this.members.has(workerId)) this.register(registration);
    const member = this.members.get(workerId);
    if (member === undefined) return false;
    const now = this.clock.now();
    member.lastHeardMs = now;
    member.reported = new Map(tasks.map((task) => [taskKey(task), task]));
    member.reportedAtMs = now;
    return true;
  }

  leave(workerId: WorkerId): boolean {
    this.known.delete(workerId);
    return this.members.delete(workerId);
  }

  /** Drops workers silent past the session timeout; returns their ids. */
  expire(): WorkerId[] {
    const now = this.clock.now();
    const dead: WorkerId[] = [];
    for (const [id, member] of this.members) {
      if (now - member.lastHeardMs > this.sessionTimeoutMs) {
        this.members.delete(id);
        dead.push(id);
      }
    }
    return dead;
  }

  get(workerId: WorkerId): Member | undefined {
    return this.members.get(workerId);
  }

  /** Live workers, sorted by id. */
  live(): Member[] {
    return [...this.members.values()].sort((a, b) => (a.slot.id < b.slot.id ? -1 : a.slot.id > b.slot.id ? 1 : 0));
  }

  liveWorkers(): LiveWorker[] {
    return this.live().map((member) => ({
      slot: member.slot,
      reported: member.reported,
      reportedAtMs: member.reportedAtMs,
    }));
  }

  get size(): number {
    return this.members.size;
  }
}
