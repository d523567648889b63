// How full this thread's V8 heap is, as measured right after its last full garbage collection
// (what is live then, not the garbage waiting for the next one), as a share of the heap limit.
//
// The window operator's memory budget counts rows, and a row's size is its accumulator's: a job
// that collects values per window (a list, a set, a sketch) can fill the heap long before the row
// budget, and a thread that runs out of heap dies, is restarted, replays into the same state and
// dies again. So the operator also spills when the live heap passes HEAP_SPILL_SHARE of the limit
// (worker/window/README.md "Memory"); every thread has its own heap and its own reading.
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

/** Above this share of the heap limit live after a full collection, open windows spill. */
export const HEAP_SPILL_SHARE = 0.5;
/** Below it, the row budget is the configured one again. */
export const HEAP_RELAX_SHARE = 0.3;

export interface HeapReading {
  /** Full collections seen so far: a reading is new when this moved. */
  collections: number;
  /** Heap used right after the last full collection, over the heap limit (0 before the first). */
  liveShare: number;
}

const reading: HeapReading = { collections: 0, liveShare: 0 };
let observer: PerformanceObserver | undefined;

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
