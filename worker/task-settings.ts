/** How every task of a worker runs: compiled once from the worker's settings (cli/commands/worker.ts). */
export interface TaskSettings {
  /** Each task's RocksDB store lives in <stateDir>/<job>/<version>/<partition>. */
  stateDir: string;
  /** Largest batch handed to the processor. */
  batchMessages?: number;
  /** Bytes of messages a task's source buffers at most (default 64 MiB; source.ts). */
  maxBufferedBytes?: number;
  /** Checkpoint at least this often (processing time). */
  checkpointIntervalMs?: number;
  /** Also checkpoint after this many events (undefined: by time only). */
  checkpointEvents?: number;
  /** Rows of open windows a task holds in memory before it spills windows to RocksDB (window/operator.ts). */
  windowMemoryRows?: number;
}

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 10_000;
