/**
 * Memory handed back after a spell of syncing (bench/README.md, "Where the memory goes").
 *
 * A sync leaves dead Buffers behind (socket reads, file writes) whose backing stores are malloc'd
 * outside V8's heap: only a major GC frees them, and an idle node allocates too little for V8 to
 * run one, so they stayed until the next busy spell. A major GC frees them, then malloc_trim gives
 * the pages malloc keeps free between live chunks back to the kernel (glibc trims only the top of
 * a heap by itself). The GC needs the node started with --expose-gc, as its start lines do;
 * without it the trim alone runs.
 */
export interface MemoryReleaseParts {
  /** A major GC: `globalThis.gc` under --expose-gc. */
  collect?: (() => void) | undefined;
  /** glibc's malloc_trim(0), from the socket-calls addon. */
  trim?: (() => boolean) | undefined;
}

/** What to call once a spell of work is over; undefined when there is nothing to do it with. */
export function memoryRelease({ collect, trim }: MemoryReleaseParts): (() => void) | undefined {
  if (!collect && !trim) return undefined;
  return () => {
    // The GC first: the backing stores it frees are what the trim then returns.
    collect?.();
    trim?.();
  };
}
