// `kappa stop JOB --version V`: the leader revokes every task of the version; each worker takes a
// final checkpoint and releases it, then the version is gone.
import type { Command } from 'commander';
import { assertName } from '../../protocol/index.js';
import { addAdminOptions, adminRequest } from '../admin-request.js';
import type { NatsFlags } from '../nats-options.js';

export function registerStop(program: Command): void {
  addAdminOptions(
    program
      .command('stop <job>')
      .description('stop a job version: its tasks are revoked, flushed and released')
      .requiredOption('--version <version>', 'job version to stop')
      .option('--json', 'print the reply as JSON'),
  ).action(async (job: string, flags: NatsFlags & { version: string; json?: boolean }) => {
    assertName('job', job);
    assertName('version', flags.version);
    const detail = await adminRequest(flags, 'stop', { type: 'job.stop', job, version: flags.version });
    if (flags.json) return console.log(JSON.stringify(detail, null, 2));
    console.log(`${job} ${flags.version}: stopping, ${detail.releasing} task(s) being released`);
  });
}
