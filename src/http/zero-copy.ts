/**
 * sendfile(2) from the edge-net addon (net-addon.ts), handed to the serving code by the
 * composition root. Optional: without the addon or switched off (EDGE_ZERO_COPY=0), loadZeroCopy returns
 * null and packages are copied through Buffers (file-pump.ts), which is correct, only costlier per
 * byte.
 */
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import { handleFd, loadNetAddon, type NetAddonLoad } from './net-addon.ts';

export interface ZeroCopy {
  /** Bytes sent (>= 0) or a negative errno. Never blocks on the socket (libuv's are non-blocking). */
  sendfile(socketFd: number, fileFd: number, offset: number, count: number): number;
  /**
   * Involuntary context switches of the calling thread (the addon's getrusage RUSAGE_THREAD), or
   * a negative errno; absent in older builds (file-pump.ts then counts the whole process's).
   */
  threadPreemptions?(): number;
}

export const ERRNO = {
  EAGAIN: -(constants.errno.EAGAIN ?? 11),
  EINVAL: -(constants.errno.EINVAL ?? 22),
  ENOSYS: -(constants.errno.ENOSYS ?? 38),
  EOPNOTSUPP: -(constants.errno.EOPNOTSUPP ?? 95),
  EPIPE: -(constants.errno.EPIPE ?? 32),
  ECONNRESET: -(constants.errno.ECONNRESET ?? 104),
  ENOTCONN: -(constants.errno.ENOTCONN ?? 107),
  EBADF: -(constants.errno.EBADF ?? 9),
} as const;

export interface ZeroCopyLoad {
  zeroCopy: ZeroCopy | null;
  /** Why it is off, for the start-up log. */
  reason: string;
}

/** `enabled: false` is the operator's switch (EDGE_ZERO_COPY=0, read by config/cli-options.ts). */
export function loadZeroCopy(switches: { enabled?: boolean } = {}, loaded: NetAddonLoad = loadNetAddon()): ZeroCopyLoad {
  if (switches.enabled === false) return { zeroCopy: null, reason: 'switched off (EDGE_ZERO_COPY=0)' };
  return { zeroCopy: loaded.addon, reason: loaded.reason };
}

/** The kernel descriptor of a plain TCP socket, or null (TLS, a socket not yet connected, tests' fakes). */
export function socketFd(socket: Socket | null | undefined): number | null {
  if (!socket || (socket as { encrypted?: boolean }).encrypted) return null;
  return handleFd(socket);
}

/**
 * Bytes sent with sendfile never pass through the socket's write path, so Node does not see the
 * connection as active: refresh its inactivity timer (the one res.setTimeout armed) by hand.
 * `_unrefTimer` is internal but has existed since Node 0.x; without it the timer still fires
 * only after idleTimeoutMs without any Node-visible write, as the copy path would.
 */
export function touchSocket(socket: Socket | null | undefined): void {
  const touch = (socket as unknown as { _unrefTimer?: () => void } | null | undefined)?._unrefTimer;
  if (typeof touch === 'function') touch.call(socket);
}
