// Times the coordinator's task assignment, which the leader reruns on every join, leave and job
// change: fresh, after one worker joins, after one leaves. Prints the median of several runs
// and how many tasks moved.
//
//   npx tsx bench/assignment.ts [--runs N]
import { performance } from 'node:perf_hooks';
import { assignTasks, type AssignmentInput, type WorkerSlot } from '../coordinator/assignment.js';
import type { TaskId } from '../protocol/index.js';

const runsFlag = process.argv.indexOf('--runs');
const runs = runsFlag === -1 ? 15 : Number(process.argv[runsFlag + 1]);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Median wall time of `runs` calls, after two warm-up calls so the JIT has compiled the path. */
function time(input: AssignmentInput): { ms: number; moves: number } {
  let moves = 0;
  for (let i = 0; i < 2; i++) moves = assignTasks(input).moves.length;
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    assignTasks(input);
    samples.push(performance.now() - start);
  }
  return { ms: median(samples), moves };
}

function scenario(workerCount: number, partitionCount: number, capacityOf: (i: number) => number): void {
  const tasks: TaskId[] = Array.from({ length: partitionCount }, (_, partition) => ({
    job: 'orders',
    version: 'v1',
    partition,
  }));
  const carries = new Set(['orders/v1']);
  const workers: WorkerSlot[] = Array.from({ length: workerCount }, (_, i) => ({
    id: `worker-${i}`,
    capacity: capacityOf(i),
    carries,
  }));
  const fresh = { tasks, workers, previous: new Map<string, string>() };
  const settled = assignTasks(fresh).owners;
  // The joiner and the leaver are as large as the last worker (the largest with mixed capacities).
  const joiner = { id: 'joiner', capacity: capacityOf(workerCount - 1), carries };
  const joined = { tasks, workers: [...workers, joiner], previous: settled };
  const left = { tasks, workers: workers.slice(0, -1), previous: settled };

  const label = `${workerCount} workers × ${partitionCount} tasks${capacityOf(1) === capacityOf(0) ? '' : ' (capacities 1–8)'}`;
  for (const [name, input] of [
    ['fresh', fresh],
    ['join', joined],
    ['leave', left],
  ] as const) {
    const { ms, moves } = time(input);
    console.log(
      `${label.padEnd(44)} ${name.padEnd(6)} ${ms.toFixed(2).padStart(7)} ms  ${String(moves).padStart(5)} moves`,
    );
  }
}

console.log(`task assignment, median of ${runs} runs`);
scenario(100, 1024, () => 1);
scenario(1000, 4096, () => 1);
scenario(1000, 4096, (i) => 1 + (i % 8));
