// How `kappa replay --follow` and `kappa status --watch` show a job version catching up: a bar
// per version with progress, lag and the coordinator's ETA in a terminal, otherwise one plain
// line every few seconds (logs and pipes stay readable).
import cliProgress from 'cli-progress';
import type { ClusterStatus, JobVersionStatusView } from '../protocol/index.js';

const BAR_SCALE = 1000;

export interface VersionProgressView {
  update(versions: readonly JobVersionStatusView[]): void;
  stop(): void;
}

/** Where a version's tasks read: the live stream, or (hybrid replay) how many of them still read the archive. */
export function readingOf(version: Pick<JobVersionStatusView, 'tasksInArchive' | 'tasksAssigned'>): string {
  const inArchive = version.tasksInArchive ?? 0;
  return inArchive > 0 ? `archive ${inArchive}/${version.tasksAssigned}` : 'live';
}

export function describeVersion(version: JobVersionStatusView): string {
  const percent = version.progress === null ? '?' : (version.progress * 100).toFixed(1);
  const eta = version.etaSeconds === null ? '?' : formatSeconds(version.etaSeconds);
  const served = version.served ? ', serving' : version.autoCutover ? ', cutover when caught up' : '';
  const diff = version.diff;
  const changes =
    diff === undefined
      ? ''
      : `, ${diff.changed + diff.onlyInFrom + diff.onlyInTo} of ${diff.compared} rows differ from ${diff.from}${diff.withinBound ? '' : ' (over --max-changed: held)'}`;
  return `${version.job} ${version.version}: ${version.state}, reading ${readingOf(version)}, ${percent}% , lag ${version.lagMessages}, ETA ${eta}${served}${changes}`;
}

export function startVersionProgress(): VersionProgressView {
  if (!process.stderr.isTTY) {
    let lastPrintMs = 0;
    return {
      update(versions) {
        if (Date.now() - lastPrintMs < 2_000) return;
        lastPrintMs = Date.now();
        for (const version of versions) console.error(`kappa: ${describeVersion(version)}`);
      },
      stop() {},
    };
  }
  const bars = new cliProgress.MultiBar(
    {
      format: '{name} {bar} {percent}% | {reading} | lag {lag} | ETA {eta} {note}',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  const byVersion = new Map<string, cliProgress.SingleBar>();
  return {
    update(versions) {
      for (const version of versions) {
        const name = `${version.job} ${version.version}`;
        let bar = byVersion.get(name);
        if (!bar) byVersion.set(name, (bar = bars.create(BAR_SCALE, 0)));
        bar.update(Math.round((version.progress ?? 0) * BAR_SCALE), {
          name,
          percent: version.progress === null ? '?' : (version.progress * 100).toFixed(1),
          lag: version.lagMessages,
          reading: readingOf(version),
          eta: version.etaSeconds === null ? '?' : formatSeconds(version.etaSeconds),
          note: version.served
            ? '(serving)'
            : version.autoCutover
              ? '(cutover when caught up)'
              : version.state === 'running'
                ? ''
                : `(${version.state})`,
        });
      }
    },
    stop: () => bars.stop(),
  };
}

export function versionOf(status: ClusterStatus, job: string, version: string): JobVersionStatusView | undefined {
  return status.versions.find((candidate) => candidate.job === job && candidate.version === version);
}

function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.ceil(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}
