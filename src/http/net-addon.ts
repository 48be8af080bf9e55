/**
 * The socket-calls addon (native/edge-net.c, compiled by scripts/build.mjs at install): sendfile
 * and the event loop thread's preemptions (zero-copy.ts, file-pump.ts), accept (burst-accept.ts),
 * malloc_trim and the ICU data release (memory-release.ts), the malloc arena cap
 * (process-settings.ts); loaded by the composition root. Optional:
 * without a compiler or off Linux it is absent, and the node copies package bytes through Buffers
 * and accepts connections one per event-loop turn, which is correct, only costlier.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NetAddon {
  /** Bytes sent (>= 0) or a negative errno. Never blocks on the socket (libuv's are non-blocking). */
  sendfile(socketFd: number, fileFd: number, offset: number, count: number): number;
  /** A new connection's descriptor (>= 0) or a negative errno; -EAGAIN when none is queued. */
  accept(listenFd: number): number;
  /**
   * glibc's malloc_trim(0): the free pages malloc holds go back to the kernel. Absent in builds
   * older than it (the other calls still work).
   */
  trimMemory?(): boolean;
  /**
   * Drops the pages of ICU's read-only data (`symbol`, e.g. "icudt78_dat") from the process's
   * memory (madvise MADV_DONTNEED); they are mapped back from the page cache when read again.
   * Bytes advised, 0 when the symbol is not there, or -errno. Absent in older builds.
   */
  releaseIcuData?(symbol: string): number;
  /** Involuntary context switches of the calling thread (getrusage RUSAGE_THREAD), or -errno. */
  threadPreemptions?(): number;
  /** glibc's mallopt(M_ARENA_MAX, count) for threads that allocate from now on; false elsewhere. */
  limitMallocArenas?(count: number): boolean;
}

export interface NetAddonLoad {
  addon: NetAddon | null;
  /** The file loaded, or why there is none (for the start-up log). */
  reason: string;
}

/** Where the build puts the addon, from this module (src/http/) or from the bundled start.js. */
function candidates(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return [path.resolve(here, '../../build/edge-net.node'), path.resolve(here, 'build/edge-net.node')];
}

export function loadNetAddon(): NetAddonLoad {
  if (process.platform !== 'linux') return { addon: null, reason: `the edge-net addon is Linux-only (${process.platform})` };
  const file = candidates().find((candidate) => existsSync(candidate));
  if (!file) return { addon: null, reason: 'build/edge-net.node not built (no C compiler at install?)' };
  try {
    const addon = createRequire(import.meta.url)(file) as Partial<NetAddon>;
    if (typeof addon.sendfile !== 'function' || typeof addon.accept !== 'function') return { addon: null, reason: `${file} is an older build (run npm install)` };
    return { addon: addon as NetAddon, reason: file };
  } catch (error) {
    return { addon: null, reason: `${file} failed to load: ${(error as Error).message}` };
  }
}

/**
 * The kernel descriptor behind a Node socket or server (`_handle.fd`: internal, but there since
 * Node 0.x), or null when there is none (not connected or listening, not a kernel socket).
 */
export function handleFd(target: unknown): number | null {
  const fd = (target as { _handle?: { fd?: unknown } | null } | null | undefined)?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}
