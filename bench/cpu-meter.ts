// CPU seconds per process (Linux /proc), printed with a bench's figures: on a small machine the
// nats-server and the processes measured share the cores.
import { readdirSync, readFileSync } from 'node:fs';

/** The fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], utime [11]), or undefined. */
function statFields(pid: number | string | undefined): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds a process has used so far, all its threads (Linux; 0 elsewhere). */
export function cpuSeconds(pid: number | undefined): number {
  const fields = statFields(pid);
  // utime and stime, in clock ticks (100/s).
  return fields === undefined ? 0 : (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds of a process and its children, those running and those it has reaped (Linux; 0
 * elsewhere): a PostgreSQL server forks one process per connection. Children the process has not
 * reaped yet when they exit are missed.
 */
export function cpuSecondsWithChildren(pid: number | undefined): number {
  const fields = statFields(pid);
  if (fields === undefined) return 0;
  // utime, stime, then cutime and cstime: the CPU of the children it has waited for.
  let ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const child = statFields(entry);
    if (child !== undefined && Number(child[1]) === pid) ticks += Number(child[11]) + Number(child[12]);
  }
  return ticks / 100;
}

/** A process measured alone (its pid), or with its children. */
export type MeasuredProcess = number | undefined | { withChildren: number | undefined };

/** CPU seconds used by each named process between two calls. */
export function cpuMeter(pids: Record<string, MeasuredProcess>): () => string {
  const seconds = (measured: MeasuredProcess) =>
    typeof measured === 'object' ? cpuSecondsWithChildren(measured.withChildren) : cpuSeconds(measured);
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, seconds(pid)]));
  return () =>
    'CPU s: ' +
    Object.entries(pids)
      .map(([name, pid]) => `${name} ${(seconds(pid) - before[name]!).toFixed(1)}`)
      .join(', ');
}
