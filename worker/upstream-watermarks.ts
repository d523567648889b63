// The watermark of a keyed task that reads a repartition topic: the minimum over every upstream
// partition's watermark, as Flink's operators take the minimum over their input channels. An
// upstream partition that has reported nothing yet holds it at −∞; one that says it is idle is
// left out until its next event. It also remembers the last upstream sequence seen from each
// upstream partition, so a record a restarted route task publishes again is recognised and
// dropped (exactly-once across the hop, whatever JetStream's duplicate window).

/** Checkpointed with the task (JSON-safe: −∞ as null). */
export interface UpstreamSnapshot {
  watermarks: Array<number | null>;
  sequences: number[];
  idle: boolean[];
}

export class UpstreamWatermarks {
  private readonly offsets: number[] = [];
  private readonly watermarks: number[];
  private readonly sequences: number[];
  private readonly idle: boolean[];
  /** The minimum as last computed; recomputed only when the upstream holding it (or an idleness) changed. */
  private cachedMinimum = -Infinity;
  private stale = true;

  /** `upstreamPartitions[s]`: partitions of source s. */
  constructor(upstreamPartitions: readonly number[], restored?: UpstreamSnapshot) {
    let total = 0;
    for (const partitions of upstreamPartitions) {
      this.offsets.push(total);
      total += partitions;
    }
    this.watermarks = new Array<number>(total).fill(-Infinity);
    this.sequences = new Array<number>(total).fill(0);
    this.idle = new Array<boolean>(total).fill(false);
    if (restored && restored.watermarks.length === total) {
      restored.watermarks.forEach((watermark, index) => (this.watermarks[index] = watermark ?? -Infinity));
      restored.sequences.forEach((sequence, index) => (this.sequences[index] = sequence));
      restored.idle.forEach((idle, index) => (this.idle[index] = idle));
    }
  }

  /** Flat index of an upstream partition; −1 when the plan has no such partition. */
  indexOf(source: number, partition: number): number {
    const offset = this.offsets[source];
    if (offset === undefined) return -1;
    const next = this.offsets[source + 1] ?? this.watermarks.length;
    return offset + partition < next ? offset + partition : -1;
  }

  /** Whether an event from upstream `index` at `sequence` was seen already. */
  isRepeat(index: number, sequence: number): boolean {
    return sequence <= this.sequences[index]!;
  }

  /** An event (not a repeat): it moves the upstream's position and watermark, and ends its idleness. */
  acceptEvent(index: number, sequence: number, watermarkMs: number): void {
    this.sequences[index] = sequence;
    this.raise(index, watermarkMs);
    this.setIdle(index, false);
  }

  /** A mark: a watermark (never moving one back) and, unless it is older than the last event, idleness. */
  acceptMark(index: number, sequence: number, watermarkMs: number, idle: boolean): void {
    this.raise(index, watermarkMs);
    if (sequence >= this.sequences[index]!) this.setIdle(index, idle);
  }

  private raise(index: number, watermarkMs: number): void {
    const before = this.watermarks[index]!;
    if (watermarkMs <= before) return;
    this.watermarks[index] = watermarkMs;
    // Only the upstream at the minimum can move it (per event this is the common, cheap case).
    if (before <= this.cachedMinimum) this.stale = true;
  }

  private setIdle(index: number, idle: boolean): void {
    if (this.idle[index] === idle) return;
    this.idle[index] = idle;
    this.stale = true;
  }

  /** The minimum over the upstream partitions that are not idle; −∞ when all are. */
  minimum(): number {
    if (!this.stale) return this.cachedMinimum;
    this.stale = false;
    this.cachedMinimum = this.computeMinimum();
    return this.cachedMinimum;
  }

  /** The highest watermark of any upstream: a bound on what the minimum can reach before one of them moves. */
  maximum(): number {
    let maximum = -Infinity;
    for (const watermark of this.watermarks) if (watermark > maximum) maximum = watermark;
    return maximum;
  }

  private computeMinimum(): number {
    let minimum = Infinity;
    let active = 0;
    for (let index = 0; index < this.watermarks.length; index++) {
      if (this.idle[index]) continue;
      active++;
      const watermark = this.watermarks[index]!;
      if (watermark < minimum) minimum = watermark;
    }
    return active === 0 ? -Infinity : minimum;
  }

  snapshot(): UpstreamSnapshot {
    return {
      watermarks: this.watermarks.map((watermark) => (Number.isFinite(watermark) ? watermark : null)),
      sequences: [...this.sequences],
      idle: [...this.idle],
    };
  }
}
