// The lease of a standalone worker on its job version: one KV key `<job>.<version>` in bucket
// `buckets.standaloneLeases`, whose max_age is the lease. Only one standalone replica runs a job
// version: a second one finds the key held and refuses with TaskHeldError instead of running every
// partition a second time. A replica restarted with the same `--id` takes its own lease over at
// once; any other waits until the holder stopped renewing for a whole lease.
//
// The holder renews with compare-and-set every ttl/4. A renewal that finds the key rewritten (this
// process was paused past the lease and another replica took over) loses the lease: the worker
// must stop. Safety does not rest on the lease alone: a standalone claim goes one epoch above the
// checkpoint's, so whichever replica claims last fences the other's commits.
import { hostname } from 'node:os';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { buckets, TaskHeldError } from '../protocol/index.js';
import { internalReplicas } from '../runtime/index.js';

/** How long a standalone replica that stopped renewing (killed, paused) keeps its job version. */
export const STANDALONE_LEASE_TTL_MS = 10_000;

interface Holder {
  workerId: string;
  host: string;
  pid: number;
  acquiredAtMs: number;
}

export interface StandaloneLeaseOptions {
  nc: NatsConnection;
  job: string;
  version: string;
  /** This replica's id; a restart with the same id takes its own lease over. */
  workerId: string;
  /** Called once if the lease is lost (another replica holds it now). */
  onLost: (error: TaskHeldError) => void;
  /** Errors of a renewal that do not by themselves lose the lease (a timeout while reconnecting). */
  onError?: (error: unknown) => void;
}

export class StandaloneLease {
  private timer: NodeJS.Timeout | undefined;
  private lost = false;
  /** When the last successful renewal started: past a whole lease without one, the lease is gone. */
  private renewedAtMs: number;

  private constructor(
    private readonly kv: KV,
    private readonly key: string,
    private readonly holder: Holder,
    private revision: number,
    private readonly options: StandaloneLeaseOptions,
  ) {
    this.renewedAtMs = Date.now();
    this.timer = setInterval(() => void this.renew(), STANDALONE_LEASE_TTL_MS / 4);
  }

  /** Takes the job version's lease, or throws TaskHeldError naming the replica that holds it. */
  static async acquire(options: StandaloneLeaseOptions): Promise<StandaloneLease> {
    const kv = await new Kvm(options.nc).create(buckets.standaloneLeases, {
      history: 1,
      ttl: STANDALONE_LEASE_TTL_MS,
      replicas: internalReplicas(),
    });
    const key = `${options.job}.${options.version}`;
    const holder: Holder = { workerId: options.workerId, host: hostname(), pid: process.pid, acquiredAtMs: Date.now() };
    const value = JSON.stringify(holder);
    for (let attempt = 0; attempt < 5; attempt++) {
      const entry = await kv.get(key);
      try {
        if (entry === null || entry.operation !== 'PUT')
          return new StandaloneLease(kv, key, holder, await kv.create(key, value), options);
        const current = entry.json<Holder>();
        if (current.workerId !== options.workerId) {
          throw new TaskHeldError(
            `job ${options.job} version ${options.version} is already run by standalone worker '${current.workerId}' (pid ${current.pid} on ${current.host}): ` +
              `run one standalone worker per job version (stop that one first; its lease ends ${STANDALONE_LEASE_TTL_MS / 1000} s after it stops renewing), ` +
              `or run workers under a coordinator to spread the partitions`,
          );
        }
        // Our own id: a restart of this replica (its previous process is gone or will be fenced).
        return new StandaloneLease(kv, key, holder, await kv.update(key, value, entry.revision), options);
      } catch (error) {
        if (error instanceof TaskHeldError) throw error;
        // Another replica wrote the key between our read and write: read again and decide again.
      }
    }
    throw new TaskHeldError(
      `job ${options.job} version ${options.version}: could not take the standalone lease, its key kept changing`,
    );
  }

  /** Stops renewing and deletes the key if it is still ours, so another replica can start at once. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    if (this.lost) return;
    await this.kv
      .delete(this.key, { previousSeq: this.revision })
      .catch((error: unknown) => this.options.onError?.(error));
  }

  private async renew(): Promise<void> {
    if (this.lost) return;
    const startedAtMs = Date.now();
    try {
      this.revision = await this.kv.update(this.key, JSON.stringify(this.holder), this.revision);
      this.renewedAtMs = startedAtMs;
      return;
    } catch (error) {
      const entry = await this.kv.get(this.key).catch(() => undefined);
      if (entry === undefined && startedAtMs - this.renewedAtMs < STANDALONE_LEASE_TTL_MS) {
        this.options.onError?.(error); // NATS unreachable for now: retried at the next tick
        return;
      }
      const current = entry && entry.operation === 'PUT' ? entry.json<Holder>() : undefined;
      if (current === undefined) {
        // It expired while we were not renewing, and nobody took it: take it again. (Had another
        // replica started meanwhile, its claims would have fenced our commits anyway.)
        const revision = await this.kv.create(this.key, JSON.stringify(this.holder)).catch(() => undefined);
        if (revision !== undefined) {
          this.revision = revision;
          this.renewedAtMs = startedAtMs;
          return;
        }
      }
      this.lost = true;
      clearInterval(this.timer);
      this.options.onLost(
        new TaskHeldError(
          `lost the standalone lease of job ${this.options.job} version ${this.options.version}` +
            (current ? ` to worker '${current.workerId}' (pid ${current.pid} on ${current.host})` : '') +
            ': stopping',
        ),
      );
    }
  }
}
