// The built CLI against a real nats-server where something else answers as the leader: a reply
// that is not what its verb's schema says ends the command with one line naming the verb and the
// field (exit 1), never a crash later on a missing field; a refusal prints the leader's code.
import { describe, expect, it } from 'vitest';
import { encodeMessage, subjects, type Message } from '../protocol/index.js';
import { kappa } from './harness/cli.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer();

/** Answers every request on the verb's subject with `reply`, until the returned function is called. */
function fakeLeader(verb: string, reply: Message): () => void {
  const subscription = nats.nc.subscribe(subjects.adminRequest(verb), {
    callback: (_error, msg) => void msg.respond(encodeMessage(reply)),
  });
  return () => subscription.unsubscribe();
}

describe('admin replies in the CLI', () => {
  it('ends with one line naming the verb and the field when a reply is malformed', async () => {
    // A status whose version lacks everything but its job: `kappa status` would print "undefined" columns.
    const stop = fakeLeader('status', {
      type: 'reply.ok',
      detail: {
        leader: { coordinatorId: 'c1', fencingToken: 1 },
        workers: [],
        versions: [{ job: 'clicks' }],
        tasks: [],
      },
    });
    try {
      const result = await kappa(['status', '--nats', nats.url]);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr.trim().split('\n')).toEqual([
        expect.stringMatching(
          /^kappa: the leader's reply to 'status' is malformed: field 'versions\.0\.version': .* \(is the coordinator another version of kappa\?\)$/,
        ),
      ]);
    } finally {
      stop();
    }
  });

  it("prints the leader's refusal with its code", async () => {
    const stop = fakeLeader('stop', {
      type: 'reply.error',
      code: 'VERSION_NOT_FOUND',
      message: 'job clicks version v9 is not running',
    });
    try {
      const result = await kappa(['stop', 'clicks', '--version', 'v9', '--nats', nats.url]);
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toBe(
        'kappa: stop rejected (VERSION_NOT_FOUND): job clicks version v9 is not running',
      );
    } finally {
      stop();
    }
  });
});
