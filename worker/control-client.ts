// The worker's end of the control protocol (protocol/messages.ts) over NATS: it publishes
// register, heartbeat, task.released and leave to the coordinator, and hands task.assign and
// task.revoke from the coordinator to the pool. Knows the wire, not what a task is.
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  decodeMessage,
  encodeMessage,
  subjects,
  type Message,
  type MessageOf,
  type TaskId,
  type TaskStatus,
} from '../protocol/index.js';

export interface ControlHandlers {
  onAssign(message: MessageOf<'task.assign'>): void;
  onRevoke(message: MessageOf<'task.revoke'>): void;
}

export interface Registration {
  capacity: number;
  carries: MessageOf<'worker.register'>['carries'];
  httpUrl?: string;
}

export class ControlClient {
  private readonly subscription: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    readonly workerId: string,
    handlers: ControlHandlers,
    private readonly logger: Logger,
  ) {
    this.subscription = nc.subscribe(subjects.coordinatorToWorker(workerId), {
      callback: (error, message) => {
        if (error) {
          logger.error({ err: error }, 'control subscription failed');
          return;
        }
        let decoded: Message;
        try {
          decoded = decodeMessage(message.data);
        } catch (failure) {
          // A message we cannot read is logged, never acted on: the coordinator resends on reconcile.
          logger.warn({ err: failure }, 'ignoring an unreadable control message');
          return;
        }
        if (decoded.type === 'task.assign') handlers.onAssign(decoded);
        else if (decoded.type === 'task.revoke') handlers.onRevoke(decoded);
        else logger.warn({ type: decoded.type }, 'ignoring a control message a worker does not handle');
      },
    });
  }

  /** Idempotent: sent at start and again periodically, so a coordinator that forgot us (new leader) relearns us. */
  register(registration: Registration): void {
    this.send({ type: 'worker.register', workerId: this.workerId, ...registration });
  }

  heartbeat(tasks: TaskStatus[], registration?: Registration): void {
    this.send({ type: 'worker.heartbeat', workerId: this.workerId, tasks, ...registration });
  }

  released(task: TaskId, epoch: number, sequence: number): void {
    this.send({ type: 'task.released', workerId: this.workerId, task, epoch, sequence });
  }

  /** Sent last, after every task is released; resolves when the server has it. */
  async leave(): Promise<void> {
    this.send({ type: 'worker.leave', workerId: this.workerId });
    await this.nc.flush();
  }

  close(): void {
    this.subscription.unsubscribe();
  }

  private send(message: Message): void {
    this.nc.publish(subjects.workerToCoordinator, encodeMessage(message));
  }
}
