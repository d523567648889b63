// `kappa start JOB --version V [--from …] [--topic T]`: asks the leading coordinator to run a job version.
import type { Command } from 'commander';
import { ConfigError, assertName, type StartPosition } from '../../protocol/index.js';
import { addAdminOptions, adminRequest } from '../admin-request.js';
import type { NatsFlags } from '../nats-options.js';

export function registerStart(program: Command): void {
  addAdminOptions(
    program
      .command('start <job>')
      .description('start a job version: the coordinator assigns its tasks to workers that carry it')
      .requiredOption('--version <version>', 'job version to start (e.g. v2)')
      .option(
        '--from <position>',
        'where a new version starts reading: earliest | latest | <sequence> | <ISO time>',
        'earliest',
      )
      .option('--topic <topic>', 'topic it reads (default: the topic its workers report)')
      .option('--json', 'print the reply as JSON'),
  ).action(
    async (job: string, flags: NatsFlags & { version: string; from: string; topic?: string; json?: boolean }) => {
      assertName('job', job);
      assertName('version', flags.version);
      if (flags.topic !== undefined) assertName('topic', flags.topic);
      const detail = await adminRequest(flags, 'start', {
        type: 'job.start',
        job,
        version: flags.version,
        from: parseStartPosition(flags.from),
        topic: flags.topic,
      });
      if (flags.json) return console.log(JSON.stringify(detail, null, 2));
      const keyed = detail.stages?.at(-1);
      const where =
        detail.stages && detail.stages.length > 1 && keyed
          ? ` on topic ${detail.topic}, repartitioned through ${keyed.topic} (${keyed.partitions} partitions)`
          : detail.topic
            ? ` on topic ${detail.topic} (${detail.partitions ?? '?'} partitions)`
            : '';
      console.log(
        `${job} ${flags.version}: ${detail.alreadyRunning ? 'already started, ' : ''}${detail.state}${where}`,
      );
    },
  );
}

/** earliest | latest | a stream sequence ≥ 1 | an ISO-8601 time. */
export function parseStartPosition(raw: string): StartPosition {
  if (raw === 'earliest' || raw === 'latest') return { kind: raw };
  if (/^\d+$/.test(raw)) {
    const sequence = Number(raw);
    if (sequence >= 1 && Number.isSafeInteger(sequence)) return { kind: 'sequence', sequence };
  }
  const timeMs = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : Number.NaN;
  if (Number.isFinite(timeMs)) return { kind: 'time', timeMs };
  throw new ConfigError(`--from must be earliest, latest, a sequence ≥ 1 or an ISO time, found ${JSON.stringify(raw)}`);
}
