// How full this thread's V8 heap is, as measured right after its last full garbage collection
// (what is live then, not the garbage waiting for the next one), as a share of the heap limit.
//
// Memory budgets count rows (open windows) and keys (active actors), and their sizes are the
// accumulators' and the state's: a job that collects values per window or per key (a list, a set,
// a sketch) can fill the heap long before those budgets, and a thread that runs out of heap dies,
// is restarted, replays into the same state and dies again. So the window operator also spills,
// and `kappa run` also flushes keyed state and deactivates keys, when the live heap passes
// HEAP_SPILL_SHARE of the limit (worker/window/README.md "Memory", state/README.md); every thread
// has its own heap and its own reading.
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

/** Above this share of the heap limit live after a full collection, open windows spill. */
export const HEAP_SPILL_SHARE = 0.5;
/** Below it, the row budget is the configured one again. */
export const HEAP_RELAX_SHARE = 0.3;
/**
 * Above this share of the limit in use now (garbage included), a budget acts without waiting for
 * a collection's report: the report comes as a task of the event loop, and a busy loop (a batch
 * run awaiting RocksDB) can reach the limit before it runs. Acted on again only when use grows.
 */
export const HEAP_NEAR_LIMIT_SHARE = 0.75;
const NEAR_LIMIT_STEP = 0.05;

export interface HeapReading {
  /** Full collections seen so far: a reading is new when this moved. */
  collections: number;
  /** Heap used right after the last full collection, over the heap limit (0 before the first). */
  liveShare: number;
}

const reading: HeapReading = { collections: 0, liveShare: 0 };
let observer: PerformanceObserver | undefined;

/** Each full collection's reading once: what a budget acts on, since only the next shows the effect. */
export class HeapWatch {
  private seen = 0;
  /** The share in use when the watch last stood in for a report (near the limit); 0 after a report. */
  private nearLimitActedAt = 0;

  constructor(
    private readonly heap: () => HeapReading = heapAfterFullCollection,
    private readonly inUseShare: () => number = heapInUseShare,
  ) {}

  /**
   * The reading of a full collection not seen yet; else, near the limit, the share in use now
   * (once per NEAR_LIMIT_STEP of growth); else undefined.
   */
  newReading(): HeapReading | undefined {
    const heap = this.heap();
    if (heap.collections !== this.seen) {
      this.seen = heap.collections;
      this.nearLimitActedAt = 0;
      return heap;
    }
    const inUse = this.inUseShare();
    if (inUse <= HEAP_NEAR_LIMIT_SHARE || inUse < this.nearLimitActedAt + NEAR_LIMIT_STEP) return undefined;
    this.nearLimitActedAt = inUse;
    return { collections: heap.collections, liveShare: inUse };
  }

  /** Whether a full collection not seen yet left the heap past HEAP_SPILL_SHARE live. */
  pressed(): boolean {
    return (this.newReading()?.liveShare ?? 0) > HEAP_SPILL_SHARE;
  }
}

/** The heap in use now, garbage included, over the limit. */
export function heapInUseShare(): number {
  const heap = getHeapStatistics();
  return heap.used_heap_size / heap.heap_size_limit;
}

/** The latest reading; the first call starts observing this thread's collections. */
export function heapAfterFullCollection(): HeapReading {
  if (observer === undefined) {
    observer = new PerformanceObserver((entries) => {
      for (const entry of entries.getEntries()) {
        if (
          (entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind !==
          constants.NODE_PERFORMANCE_GC_MAJOR
        )
          continue;
        const heap = getHeapStatistics();
        reading.collections++;
        reading.liveShare = heap.used_heap_size / heap.heap_size_limit;
      }
    });
    observer.observe({ entryTypes: ['gc'] });
  }
  return reading;
}
