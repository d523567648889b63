// For a job that reads another job's sink topic (README "Chained jobs"): every revision the
// upstream wrote of an output id arrives as an event of its own, a retraction included, and a
// replay may bring an old one again. `latestRevisions` keeps, per output id, only the newest
// revision seen, in the actor's map state (checkpointed with it), and tells the handler what an
// event changed, so an aggregate over the upstream's results counts each result once:
//
//   onEvent(ctx, output) {
//     const latest = latestRevisions(ctx);
//     if (latest.apply(output).change === 'stale') return; // an older revision: already superseded
//     ctx.emit(top3(latest.current().map((kept) => kept.value)));
//   }
//
// A retracted id keeps a tombstone with its revision, so an older revision of it arriving late
// cannot bring it back (as a serving table does). `clear()` drops everything once the handler
// knows no more revisions will come (e.g. from a timer after the upstream's allowed lateness).
import type { ActorContext } from './actor-context.js';
import type { OutputEvent } from './topic-sink.js';

/**
 * What an event changed: `added` (the first kept revision of its id), `replaced` (a newer
 * revision of a kept one; `previous` is what it replaced), `retracted` (the id's result is
 * withdrawn; `previous` is what was kept, if anything), `stale` (not newer than the kept
 * revision: nothing changed, ignore it).
 */
export type RevisionChange = 'added' | 'replaced' | 'retracted' | 'stale';

export interface RevisionOutcome<V = unknown> {
  change: RevisionChange;
  /** The revision that was current for the id before this event (undefined when none was). */
  previous: OutputEvent<V> | undefined;
}

export interface LatestRevisions<V = unknown> {
  /** Keeps the event when it is newer than what is kept for its id; says what changed. */
  apply(event: OutputEvent<V>): RevisionOutcome<V>;
  /** The current (newest, not retracted) revision of an id. */
  get(id: string): OutputEvent<V> | undefined;
  /** Every current result, by id (ascending, so a handler's output does not depend on arrival order). */
  current(): Array<OutputEvent<V>>;
  /** Forgets every id of this key, tombstones included. */
  clear(): void;
}

/** The newest revision per upstream output id, kept in the map state `name` of the actor's key. */
export function latestRevisions<V = unknown>(ctx: ActorContext, name = 'latest-revisions'): LatestRevisions<V> {
  const kept = ctx.map<OutputEvent<V>>(name);
  const live = (event: OutputEvent<V> | undefined) => (event?.kind === 'update' ? event : undefined);
  return {
    apply(event) {
      const stored = kept.get(event.id);
      const previous = live(stored);
      if (stored && stored.revision >= event.revision) return { change: 'stale', previous };
      // A retraction is kept as a tombstone (its value is null): only its revision matters.
      kept.set(event.id, event);
      if (event.kind === 'retract') return { change: 'retracted', previous };
      return { change: previous ? 'replaced' : 'added', previous };
    },
    get: (id) => live(kept.get(id)),
    current: () =>
      kept
        .entries()
        .filter(([, event]) => event.kind === 'update')
        .sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0))
        .map(([, event]) => event),
    clear() {
      for (const [id] of kept.entries()) kept.delete(id);
    },
  };
}
