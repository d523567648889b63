// A job's aggregate functions as the window operator calls them: a function that throws becomes an
// AggregateFunctionError naming it (the operator then retries the event or dead-letters it), and
// a result is a snapshot, so later changes to the accumulator never reach an emitted revision.
import type { AggregateFunction } from '../job.js';
import { copyValue } from '../value-copy.js';

/** A user aggregate function threw; `message` names the function and carries the cause's message. */
export class AggregateFunctionError extends Error {
  constructor(
    readonly functionName: 'init' | 'add' | 'merge' | 'result',
    cause: unknown,
  ) {
    super(`aggregate ${functionName} threw: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'AggregateFunctionError';
  }
}

export class AggregateCalls {
  private readonly resultOf: NonNullable<AggregateFunction['result']>;

  constructor(private readonly aggregate: AggregateFunction) {
    this.resultOf = aggregate.result ?? ((accumulator) => accumulator);
  }

  init(): unknown {
    try {
      return this.aggregate.init();
    } catch (error) {
      throw new AggregateFunctionError('init', error);
    }
  }

  add(accumulator: unknown, value: unknown, source: string): unknown {
    try {
      return this.aggregate.add(accumulator, value, source);
    } catch (error) {
      throw new AggregateFunctionError('add', error);
    }
  }

  /** Only for session windows, whose job validation requires `merge`. */
  merge(left: unknown, right: unknown): unknown {
    try {
      return this.aggregate.merge!(left, right);
    } catch (error) {
      throw new AggregateFunctionError('merge', error);
    }
  }

  /** The value to emit: a copy of what `result` returns. */
  result(accumulator: unknown): unknown {
    try {
      return copyValue(this.resultOf(accumulator));
    } catch (error) {
      throw new AggregateFunctionError('result', error);
    }
  }
}
