// Waiting for a job version's stages (README "Keys and partitions") as the cluster tests do: every
// task running at the end of its own input stream — a route task at its source partition's last
// sequence, a keyed task at its repartition partition's — and, optionally, the keyed tasks'
// watermark at a value the test computed.
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { repartitionTopic, streams } from '../../protocol/index.js';
import { leaderStatus } from './cluster-status.js';
import { pollUntil } from './poll.js';

export interface StagesCaughtUp {
  job: string;
  version: string;
  /** The topic the route tasks read (or the keyed tasks, when the job is read directly). */
  sourceTopic: string;
  /** For a job over several topics: the topic each route stage reads, by stage name. */
  sourceTopics?: Record<string, string>;
  /** Whether the job goes through its repartition topic. */
  repartitioned: boolean;
  /** When set, the keyed tasks' watermark must equal it. */
  keyedWatermark?: number;
  timeoutMs?: number;
  /** Shown when the wait times out (the processes' logs). */
  context?: () => string;
}

export async function untilStagesCaughtUp(nc: NatsConnection, options: StagesCaughtUp): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const { job, version } = options;
  await pollUntil(
    async () => {
      const tasks = (await leaderStatus(nc)).tasks.filter((task) => task.job === job && task.version === version);
      if (tasks.length === 0) return undefined;
      for (const task of tasks) {
        if (task.state !== 'running' || task.sequence === null) return undefined;
        const keyed = task.stage === undefined;
        const topic =
          keyed && options.repartitioned
            ? repartitionTopic(job, version)
            : ((task.stage && options.sourceTopics?.[task.stage]) ?? options.sourceTopic);
        const last = (await jsm.streams.info(streams.partition(topic, task.partition))).state.last_seq;
        if (task.sequence !== last) return undefined;
        if (keyed && options.keyedWatermark !== undefined && task.watermark !== options.keyedWatermark)
          return undefined;
      }
      return true;
    },
    {
      what: `${job} ${version} caught up in every stage`,
      timeoutMs: options.timeoutMs ?? 90_000,
      ...(options.context ? { context: options.context } : {}),
    },
  );
}
