// CPU seconds per process (Linux /proc), printed with a bench's figures: on a small machine the
// nats-server and the processes measured share the cores.
import { readFileSync } from 'node:fs';

/** User + system CPU seconds a process has used so far, all its threads (Linux; 0 elsewhere). */
export function cpuSeconds(pid: number | undefined): number {
  try {
    // Fields after the command name: state is 3rd, utime 14th, stime 15th (in clock ticks, 100/s).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds used by each named process between two calls. */
export function cpuMeter(pids: Record<string, number | undefined>): () => string {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
  return () =>
    'CPU s: ' +
    Object.entries(pids)
      .map(([name, pid]) => `${name} ${(cpuSeconds(pid) - before[name]!).toFixed(1)}`)
      .join(', ');
}
