// Folds a stream of outputs into the table a reader sees: the newest revision per id wins, and a
// retraction removes the row. The KV serving table applies the same rule row by row.
import type { Output } from './types.js';

export class ServingView {
  private readonly rows = new Map<string, Output>();
  private readonly revisions = new Map<string, number>();

  apply(outputs: readonly Output[]): void {
    for (const output of outputs) {
      const seen = this.revisions.get(output.id);
      if (seen !== undefined && seen > output.revision) continue;
      this.revisions.set(output.id, output.revision);
      if (output.kind === 'retract') this.rows.delete(output.id);
      else this.rows.set(output.id, output);
    }
  }

  get size(): number {
    return this.rows.size;
  }

  values(): IterableIterator<Output> {
    return this.rows.values();
  }
}
