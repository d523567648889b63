// What the coordinator does with each message a worker sends. Every replica keeps membership from
// them (so a follower that becomes leader already knows who is alive); only the leader with its
// state loaded also stores registrations and reconciles.
import type { Logger } from 'pino';
import { taskKey, type Message } from '../protocol/index.js';
import type { LeaderState } from './leader-state.js';
import type { Membership } from './membership.js';

export interface WorkerMessageContext {
  membership: Membership;
  state: LeaderState;
  /** Leading with the stored state loaded. */
  leading: boolean;
  resolveTopics(): Promise<void>;
  reconcile(): Promise<void>;
  logger: Logger;
}

export async function onWorkerMessage(context: WorkerMessageContext, message: Message): Promise<void> {
  const { membership, state, leading, logger } = context;
  switch (message.type) {
    case 'worker.register': {
      const { type: _type, ...registration } = message;
      const changed = membership.register(registration);
      logger.info({ workerId: registration.workerId, capacity: registration.capacity, changed }, 'worker registered');
      if (leading) {
        await state.store.putWorker(registration);
        await context.resolveTopics();
        await context.reconcile();
      }
      return;
    }
    case 'worker.heartbeat': {
      let known = membership.heartbeat(message.workerId, message.tasks);
      if (!known && message.capacity !== undefined && message.carries !== undefined) {
        const registration = {
          workerId: message.workerId,
          capacity: message.capacity,
          carries: message.carries,
          httpUrl: message.httpUrl,
        };
        membership.register(registration);
        known = membership.heartbeat(message.workerId, message.tasks);
        if (leading) await state.store.putWorker(registration);
      }
      if (!known) logger.debug({ workerId: message.workerId }, 'heartbeat from an unregistered worker');
      return;
    }
    case 'worker.leave': {
      membership.leave(message.workerId);
      logger.info({ workerId: message.workerId }, 'worker left');
      if (leading) {
        await state.store.deleteWorker(message.workerId);
        await context.reconcile();
      }
      return;
    }
    case 'task.released': {
      if (!leading) return;
      const key = taskKey(message.task);
      const record = state.tasks.get(key);
      // Epoch rule: a release for anything but the current holder at the current epoch is stale.
      if (record?.worker !== message.workerId || record.epoch !== message.epoch) {
        logger.debug({ task: key, workerId: message.workerId, epoch: message.epoch }, 'ignoring a stale task.released');
        return;
      }
      state.transit.released.add(key);
      await context.reconcile();
      return;
    }
    default:
      logger.warn({ type: message.type }, 'ignoring a message not meant for the coordinator');
  }
}
