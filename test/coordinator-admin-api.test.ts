// The admin verbs (coordinator/admin-api.ts), each called alone with its dependencies passed in,
// no server; the replies checked against the schemas the CLI parses them with (protocol/messages.ts),
// and the CLI's reading of a reply (cli/admin-request.ts): typed errors, one clear error when malformed.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  answerAdminRequest,
  cutoverVersion,
  retireVersion,
  startVersion,
  stopVersion,
  type AdminContext,
} from '../coordinator/admin-api.js';
import type { JobVersionRecord, TaskRecord } from '../coordinator/cluster-state.js';
import { Membership } from '../coordinator/membership.js';
import { clusterStatus, versionView } from '../coordinator/status-view.js';
import { carrierOf, planVersion } from '../coordinator/topic-resolution.js';
import { replyOf } from '../cli/admin-request.js';
import {
  AdminRejectedError,
  adminReplies,
  decodeMessage,
  encodeMessage,
  jobVersionKey,
  KappaError,
  ManualClock,
  ProtocolError,
  taskKey,
  type AdminVerb,
  type Message,
} from '../protocol/index.js';

const NOW_MS = Date.UTC(2026, 0, 2, 3, 4, 5);

/** A leader's state in memory: w1 carries clicks v1 (topic clicks, kv table); topic clicks has 2 partitions. */
function leader() {
  const clock = new ManualClock(NOW_MS);
  const membership = new Membership(6_000, clock);
  membership.register({
    workerId: 'w1',
    capacity: 2,
    carries: [{ job: 'clicks', version: 'v1', topic: 'clicks', sink: 'kv' }],
  });
  const versions = new Map<string, JobVersionRecord>();
  const tasks = new Map<string, TaskRecord>();
  const aliases = new Map<string, string>();
  const progress = new Map();
  const cutovers: Array<{ version: string; maxLagMessages: number }> = [];
  let reconciles = 0;
  const viewInput = () => ({ versions, tasks, progress, aliases, workers: membership.live() });
  const context: AdminContext = {
    versions,
    tasks,
    aliases,
    progress,
    putVersion: async (record) => void versions.set(jobVersionKey(record), record),
    refreshProgress: () => {},
    reconcile: async () => void reconciles++,
    view: (version) => versionView(viewInput(), version),
    status: (filter) =>
      clusterStatus({ ...viewInput(), nowMs: clock.now(), leader: { coordinatorId: 'c1', fencingToken: 3 } }, filter),
    carrier: (key) => carrierOf(membership.live(), key),
    partitionsOf: async (topic) => (topic === 'clicks' ? 2 : undefined),
    planVersion: (version) =>
      planVersion(
        {
          carrier: (key) => carrierOf(membership.live(), key),
          topicConfig: async (topic) =>
            topic === 'clicks' ? { partitions: 2, replicas: 1, createdAt: new Date(NOW_MS).toISOString() } : undefined,
          createRepartitionTopic: async () => {},
          ranDirect: () => false,
          ranRepartitioned: () => undefined,
          logger: pino({ level: 'silent' }),
        },
        version,
      ),
    reprocessing: {
      cutover: async (version, _progress, maxLagMessages) => {
        cutovers.push({ version: version.version, maxLagMessages });
        return { version: version.version, table: 'kv', since: new Date(NOW_MS).toISOString(), previous: 'v0' };
      },
      assertRetirable: async (job, version) => {
        if (aliases.get(job) === version)
          throw new KappaError('ADMIN_REJECTED', `${job} ${version} is the version apps read`);
      },
    },
    clock,
    logger: pino({ level: 'silent' }),
  };
  return { context, versions, tasks, aliases, cutovers, reconciles: () => reconciles };
}

async function ask(context: AdminContext, request: Message): Promise<Message> {
  return decodeMessage(encodeMessage(await answerAdminRequest(context, encodeMessage(request))));
}

describe('the admin verbs', () => {
  it('starts a version on the topic and table its carrier reports, and reconciles', async () => {
    const { context, versions, reconciles } = leader();
    const reply = await startVersion(context, {
      type: 'job.start',
      job: 'clicks',
      version: 'v1',
      from: { kind: 'earliest' },
    });
    expect(versions.get('clicks/v1')).toEqual({
      job: 'clicks',
      version: 'v1',
      topic: 'clicks',
      partitions: 2,
      from: { kind: 'earliest' },
      state: 'running',
      startedAtMs: NOW_MS,
      table: 'kv',
      // w1 registered no declaration (a worker from before plans): its one topic, read directly.
      plan: { sources: [{ name: 'clicks', topic: 'clicks', partitions: 2 }], repartition: null },
    });
    expect(reconciles()).toBe(1);
    expect(adminReplies.start.parse(reply)).toMatchObject({
      job: 'clicks',
      version: 'v1',
      topic: 'clicks',
      partitions: 2,
      state: 'running',
      table: 'kv',
    });
    expect(
      await startVersion(context, { type: 'job.start', job: 'clicks', version: 'v1', from: { kind: 'latest' } }),
    ).toMatchObject({ alreadyRunning: true });
  });

  it('refuses with a stable code: a named topic that does not exist, a version still stopping, a version it does not know', async () => {
    const { context } = leader();
    await expect(
      startVersion(context, {
        type: 'job.start',
        job: 'clicks',
        version: 'v1',
        from: { kind: 'earliest' },
        topic: 'nope',
      }),
    ).rejects.toMatchObject({
      code: 'TOPIC_NOT_FOUND',
      message: expect.stringContaining('kappa topic create nope'),
    });
    await startVersion(context, { type: 'job.start', job: 'clicks', version: 'v1', from: { kind: 'earliest' } });
    await stopVersion(context, { type: 'job.stop', job: 'clicks', version: 'v1' });
    await expect(
      startVersion(context, { type: 'job.start', job: 'clicks', version: 'v1', from: { kind: 'earliest' } }),
    ).rejects.toMatchObject({ code: 'VERSION_STOPPING' });
    for (const request of [
      { type: 'job.stop', job: 'clicks', version: 'v9' },
      { type: 'job.cutover', job: 'clicks', version: 'v9', maxLagMessages: 0 },
      { type: 'job.retire', job: 'clicks', version: 'v9', graceMs: 0 },
    ] as const) {
      expect(await ask(context, request)).toMatchObject({ type: 'reply.error', code: 'VERSION_NOT_FOUND' });
    }
  });

  it('stops a version, counting the tasks being released', async () => {
    const { context, versions, tasks } = leader();
    await startVersion(context, { type: 'job.start', job: 'clicks', version: 'v1', from: { kind: 'earliest' } });
    for (const partition of [0, 1])
      tasks.set(taskKey({ job: 'clicks', version: 'v1', partition }), {
        task: { job: 'clicks', version: 'v1', partition },
        worker: partition ? 'w1' : null,
        epoch: 2,
      });
    const reply = adminReplies.stop.parse(
      await stopVersion(context, { type: 'job.stop', job: 'clicks', version: 'v1' }),
    );
    expect(reply).toMatchObject({ state: 'stopping', releasing: 1 });
    expect(versions.get('clicks/v1')?.state).toBe('stopping');
  });

  it('cuts over through reprocessing, ends a pending auto cutover and serves the version in status at once', async () => {
    const { context, versions, aliases, cutovers } = leader();
    await startVersion(context, {
      type: 'job.start',
      job: 'clicks',
      version: 'v1',
      from: { kind: 'earliest' },
      autoCutover: { maxLagMessages: 5 },
    });
    const reply = await cutoverVersion(context, {
      type: 'job.cutover',
      job: 'clicks',
      version: 'v1',
      maxLagMessages: 7,
    });
    expect(cutovers).toEqual([{ version: 'v1', maxLagMessages: 7 }]);
    expect(adminReplies.cutover.parse(reply)).toEqual({
      version: 'v1',
      table: 'kv',
      since: new Date(NOW_MS).toISOString(),
      previous: 'v0',
    });
    expect(versions.get('clicks/v1')).not.toHaveProperty('autoCutover');
    expect(aliases.get('clicks')).toBe('v1');
  });

  it('retires a version that apps do not read, dropping it after the grace period; refuses the served one', async () => {
    const { context, versions, aliases } = leader();
    await startVersion(context, { type: 'job.start', job: 'clicks', version: 'v1', from: { kind: 'earliest' } });
    aliases.set('clicks', 'v1');
    expect(await ask(context, { type: 'job.retire', job: 'clicks', version: 'v1', graceMs: 60_000 })).toMatchObject({
      type: 'reply.error',
      code: 'ADMIN_REJECTED',
    });
    aliases.clear();
    const reply = adminReplies.retire.parse(
      await retireVersion(context, { type: 'job.retire', job: 'clicks', version: 'v1', graceMs: 60_000 }),
    );
    expect(reply).toMatchObject({ state: 'stopping', dropAt: new Date(NOW_MS + 60_000).toISOString() });
    expect(versions.get('clicks/v1')).toMatchObject({ state: 'stopping', retireAtMs: NOW_MS + 60_000 });
  });

  it("answers status.request with only the asked job's versions when it names one", async () => {
    const { context } = leader();
    await startVersion(context, { type: 'job.start', job: 'clicks', version: 'v1', from: { kind: 'earliest' } });
    await startVersion(context, { type: 'job.start', job: 'orders', version: 'v1', from: { kind: 'earliest' } });
    const all = await ask(context, { type: 'status.request' });
    const one = await ask(context, { type: 'status.request', job: 'orders' });
    if (all.type !== 'reply.ok' || one.type !== 'reply.ok')
      throw new Error(`expected replies, found ${all.type}, ${one.type}`);
    expect(adminReplies.status.parse(all.detail).versions.map((version) => version.job)).toEqual(['clicks', 'orders']);
    expect(adminReplies.status.parse(one.detail).versions.map((version) => version.job)).toEqual(['orders']);
  });

  it('turns a request it cannot read into PROTOCOL_* and an error that is not ours into INTERNAL', async () => {
    const { context } = leader();
    expect(await answerAdminRequest(context, new Uint8Array([0xc1]))).toMatchObject({
      type: 'reply.error',
      code: 'PROTOCOL_GARBAGE',
    });
    expect(await ask(context, { type: 'worker.leave', workerId: 'w1' })).toMatchObject({
      type: 'reply.error',
      code: 'PROTOCOL_SCHEMA',
      message: "'worker.leave' is not an admin request",
    });
    context.partitionsOf = async () => {
      throw new TypeError('socket closed');
    };
    expect(await ask(context, { type: 'job.start', job: 'clicks', version: 'v1', from: { kind: 'earliest' } })).toEqual(
      { type: 'reply.error', code: 'INTERNAL', message: 'socket closed' },
    );
  });
});

describe("the CLI's reading of a reply", () => {
  const reply = (message: Message) => encodeMessage(message);
  const read =
    <V extends AdminVerb>(verb: V, message: Message | Uint8Array) =>
    () =>
      replyOf(verb, message instanceof Uint8Array ? message : reply(message));

  it("returns the verb's typed detail, and the leader's refusal as an AdminRejectedError with its code", () => {
    const detail = { version: 'v2', table: 'postgres', since: '2026-01-01T00:00:00.000Z' } as const;
    expect(read('cutover', { type: 'reply.ok', detail })()).toEqual(detail);
    expect(
      read('stop', { type: 'reply.error', code: 'VERSION_NOT_FOUND', message: 'job clicks version v9 is not running' }),
    ).toThrow(AdminRejectedError);
    try {
      read('stop', {
        type: 'reply.error',
        code: 'VERSION_NOT_FOUND',
        message: 'job clicks version v9 is not running',
      })();
    } catch (error) {
      expect(error instanceof AdminRejectedError && error.reason).toBe('VERSION_NOT_FOUND');
      expect((error as Error).message).toBe('stop rejected (VERSION_NOT_FOUND): job clicks version v9 is not running');
    }
  });

  it('reports a malformed reply as one ProtocolError naming the verb and the field', () => {
    const status = {
      leader: { coordinatorId: 'c1', fencingToken: 3 },
      workers: [],
      versions: [{ job: 'clicks' }],
      tasks: [],
    };
    expect(read('status', { type: 'reply.ok', detail: status })).toThrow(ProtocolError);
    expect(read('status', { type: 'reply.ok', detail: status })).toThrow(
      /^the leader's reply to 'status' is malformed: field 'versions\.0\.version': /,
    );
    expect(read('stop', { type: 'reply.ok' })).toThrow(/^the leader's reply to 'stop' is malformed: field '\(root\)'/);
    expect(read('start', { type: 'status.request' })).toThrow(
      "the leader's reply to 'start' is malformed: expected a reply, found 'status.request'",
    );
    expect(read('start', new Uint8Array([0x93, 1, 2, 3]))).toThrow(
      /^the leader's reply to 'start' is malformed: expected a control message map/,
    );
  });
});
