// One writer version per sink topic (README "Chained jobs", replaying a chain). A job reading an
// upstream's sink topic sees every output written to it; outputs of two versions of the upstream
// have different ids, so a v2 replaying into v1's topic would make the downstream count every
// result twice (once per version), and stopping v1 would not help: the topic keeps what v1 wrote.
// So `kappa start`/`kappa replay` of a version is refused while another version of its job that
// the leader knows (running, stopping or retired) writes the same topic: v2 gets its own topic,
// and the downstream jobs are replayed as new versions reading it.
//
// The sink topics come from the workers carrying the versions (`CarriedVersion.sinkTopic`, read
// by topic-resolution.ts `carrierOf`): a version no live worker carries is not checked.
import { jobVersionKey, KappaError, type JobVersionKey, type JobVersionRef } from '../protocol/index.js';
import type { JobVersionRecord } from './cluster-state.js';

export interface SinkTopicContext {
  readonly versions: ReadonlyMap<JobVersionKey, JobVersionRecord>;
  carrier(key: JobVersionKey): { sinkTopic?: string };
}

/** Throws ADMIN_REJECTED when another known version of the job writes the sink topic `version` would write. */
export function assertSinkTopicUnshared(context: SinkTopicContext, version: JobVersionRef): void {
  const topic = context.carrier(jobVersionKey(version)).sinkTopic;
  if (topic === undefined) return;
  for (const other of context.versions.values()) {
    if (other.job !== version.job || other.version === version.version) continue;
    if (context.carrier(jobVersionKey(other)).sinkTopic !== topic) continue;
    throw new KappaError(
      'ADMIN_REJECTED',
      `job ${version.job} version ${version.version} writes its outputs to topic '${topic}', which version ${other.version} of the job (${other.state}) writes too: a job reading '${topic}' would see the results of both versions. Give ${version.version} its own sink topic (e.g. '${topic}-${version.version}', created with 'kappa topic create'), then replay the jobs reading '${topic}' as new versions reading that topic. Stopping ${other.version} is not enough: the topic keeps what it wrote.`,
    );
  }
}
