// The worker's answers to task.assign and task.revoke must be idempotent: the coordinator resends
// on every reconcile. Property tests over the pure rules in worker/assignment-rules.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideAssign, decideRevoke, leastLoadedThread, type HeldTask } from '../worker/assignment-rules.js';

const held = fc.option(fc.record({ epoch: fc.integer({ min: 1, max: 20 }), releasing: fc.boolean() }), {
  nil: undefined,
});
const epoch = fc.integer({ min: 1, max: 20 });

describe('assign and revoke rules', () => {
  it('starts an unknown task, ignores a resend, and raises the epoch of a running task only upward', () => {
    expect(decideAssign(undefined, 1, true)).toBe('start');
    expect(decideAssign({ epoch: 3, releasing: false }, 3, true)).toBe('ignore');
    expect(decideAssign({ epoch: 3, releasing: false }, 2, true)).toBe('ignore');
    expect(decideAssign({ epoch: 3, releasing: false }, 4, true)).toBe('raise-epoch');
    expect(decideAssign({ epoch: 3, releasing: true }, 4, true)).toBe('start-after-release');
  });

  it('refuses every assign while shutting down', () => {
    fc.assert(fc.property(held, epoch, (task: HeldTask | undefined, e) => decideAssign(task, e, false) === 'refuse'));
  });

  it('never restarts a held task, whatever assign arrives', () => {
    fc.assert(fc.property(held, epoch, (task, e) => task === undefined || decideAssign(task, e, true) !== 'start'));
  });

  it('answers a revoke for an unknown task, ignores a stale one, and releases a held task once', () => {
    expect(decideRevoke(undefined, 5)).toBe('answer-released');
    expect(decideRevoke({ epoch: 3, releasing: false }, 2)).toBe('ignore-stale');
    expect(decideRevoke({ epoch: 3, releasing: false }, 3)).toBe('release');
    expect(decideRevoke({ epoch: 3, releasing: false }, 4)).toBe('release');
    fc.assert(
      fc.property(
        epoch,
        epoch,
        (running, revoke) => decideRevoke({ epoch: running, releasing: true }, revoke) !== 'release',
      ),
    );
  });

  it('places on the least-loaded thread, the lowest index on a tie', () => {
    expect(leastLoadedThread([])).toBe(-1);
    expect(leastLoadedThread([2, 1, 1])).toBe(1);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 50 }), { minLength: 1, maxLength: 16 }), (counts) => {
        const chosen = leastLoadedThread(counts);
        return counts[chosen] === Math.min(...counts) && counts.indexOf(Math.min(...counts)) === chosen;
      }),
    );
  });
});
