/**
 * Memory handed back once work is over (bench/README.md, "Where the memory goes").
 *
 * A sync leaves dead Buffers behind (socket reads, file writes) whose backing stores are malloc'd
 * outside V8's heap: only a major GC frees them, and an idle node allocates too little for V8 to
 * run one, so they stayed until the next busy spell. A major GC frees them, then malloc_trim gives
 * the pages malloc keeps free between live chunks back to the kernel (glibc trims only the top of
 * a heap by itself). The GC needs the node started with --expose-gc, as its start lines do;
 * without it the trim alone runs.
 *
 * ICU's data is read once in bulk: the first Intl object (node-cron's formatter, when the
 * schedules start) makes V8 list every locale ICU has, ~5-6 MiB of the binary's pages, and the
 * node formats in en-US only after that. The addon drops those read-only pages; one read again is
 * mapped back from the page cache on its next touch.
 */
export interface MemoryReleaseParts {
  /** A major GC: `globalThis.gc` under --expose-gc. */
  collect?: (() => void) | undefined;
  /** glibc's malloc_trim(0), from the socket-calls addon. */
  trim?: (() => boolean) | undefined;
  /** Drops ICU's data pages (icuDataRelease). */
  releaseIcuData?: (() => void) | undefined;
}

/** What to call once a spell of work is over; undefined when there is nothing to do it with. */
export function memoryRelease({ collect, trim, releaseIcuData }: MemoryReleaseParts): (() => void) | undefined {
  if (!collect && !trim && !releaseIcuData) return undefined;
  return () => {
    // The GC first: the backing stores it frees are what the trim then returns.
    collect?.();
    trim?.();
    releaseIcuData?.();
  };
}

/** The symbol of the ICU data this Node reads (`icudt78_dat` for ICU 78.x); null without ICU. */
export function icuDataSymbol(icuVersion: string | undefined = process.versions.icu): string | null {
  const major = /^(\d+)\./.exec(icuVersion ?? '')?.[1];
  return major ? `icudt${major}_dat` : null;
}

/** Drops ICU's data pages with the addon's releaseIcuData; undefined without the addon or ICU. */
export function icuDataRelease(release: ((symbol: string) => number) | undefined, symbol = icuDataSymbol()): (() => void) | undefined {
  if (!release || !symbol) return undefined;
  return () => {
    release(symbol);
  };
}
