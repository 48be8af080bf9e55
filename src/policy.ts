/**
 * The node's operating policy: the fixed numbers of how it serves, waits, retries and stops, in one
 * place. A leaf module: every layer may read it (the sync's own numbers are in SYNC_POLICY). Not settings: an operator tunes the node through node_config.json (config/schema.ts) and the
 * command line (config/cli-options.ts). Tests and benchmarks may override a few through
 * EdgeNodeOptions.policy, to run shorter.
 */
export interface NodePolicy {
  /**
   * Tablets asking for an active meeting not yet synced wait this long before a 503: a meeting
   * start is one burst, and the package usually arrives within it.
   */
  waitForSyncMs: number;
  /** Retry-After of a 503 (service stopped, sync not done, too many tailing): soon, not in a herd. */
  retryAfterSeconds: number;
  /**
   * Floor of a tablet's idle timeout (network.downloadTimeout may be lower): a tablet reading a
   * package that is still syncing waits on the master's pace, which the tablet cannot help.
   */
  minDownloadIdleTimeoutMs: number;
  /** Most tablets served from a package still syncing (tailing its temp file); past it 503. Bounds sockets and fds. */
  maxTailingClients: number;
  /** How long a stop lets in-flight transfers (tablets and master) finish before cutting them. */
  drainTimeoutMs: number;
  /** After cancelling the master downloads that outlived the drain: how long they get to clean up. */
  cancelGraceMs: number;
  /** After a drain that timed out: how long tablets' connections get before they are closed. */
  closeGraceMs: number;
  /**
   * At a stop, how long the node waits for the master: for a heartbeat in flight, then for the
   * unregister, then for its requests to end. A hung master must not hold the drain past
   * systemd's (60 s) or Docker's (10 s) stop timeout; it drops a silent node within 40 s anyway.
   */
  stopMasterWaitMs: number;
  /** Log lines kept in memory for /api/logs, the panel and the diagnostics zip. */
  logRingLines: number;
  /** Quick checks switched off (watchInterval 0) still wake this often, so switching them on applies soon. */
  watchIdleSeconds: number;
  /** How old the cached disk figures (check-disk-space runs df) may get before a read refreshes them. */
  diskSpaceTtlMs: number;
  /** The panel's traffic chart: a sample of the byte counters this often, this many kept (5 s × 180: the last 15 min). */
  trafficSampleMs: number;
  trafficSamples: number;
  /** Failed admin logins allowed per client address and window; undefined: the admin API's own default. */
  authLimit?: { maxFailures: number; windowMs: number };
  /** A tablet's request for an id not active here waits at most this long for the check it triggers. */
  settleWaitMs: number;
  /** The build-identity route (a sibling asking its seed) waits this long for a probe of the master before 503. */
  buildAnswerWaitMs: number;
}

/** A retry schedule's numbers: the first wait, doubled per failure (with jitter), never above the cap. */
export interface RetryPolicy {
  firstDelayMs: number;
  maxDelayMs: number;
}

/** The sync's fixed numbers (sync/): how it retries, probes and reports. */
export const SYNC_POLICY = Object.freeze({
  /** Any backoff step, before jitter, is at most this: retryDelay × 2^n grows no further. */
  backoffStepCapMs: 600_000,
  /**
   * Between failed jobs of one meeting, the poller waits longer each time (after the job's own
   * retries), so a broken package does not hammer a struggling master every poll.
   */
  failedJobMaxDelayMs: 300_000,
  /** A probe of a held package that got no usable answer is asked again after this, doubling. */
  probeRetry: { firstDelayMs: 5_000, maxDelayMs: 300_000 } satisfies RetryPolicy,
  /** A preheat waiting for its start check is asked about sooner: tablets wait for it. */
  startCheckRetry: { firstDelayMs: 5_000, maxDelayMs: 60_000 } satisfies RetryPolicy,
  /** A failed preheat is tried again after this, doubling (nothing waits for it). */
  preheatRetry: { firstDelayMs: 60_000, maxDelayMs: 3_600_000 } satisfies RetryPolicy,
  /** How long a probe of the master's stream (the build's first bytes) may take. */
  probeTimeoutMs: 30_000,
  /** How long the preheat's read of the master's meeting list may take. */
  meetingListTimeoutMs: 30_000,
  /** Least gap between the extra polls that requests for unknown ids trigger (all requests together). */
  unknownIdRefreshMs: 1_000,
  /** Download progress events, for status and admin consumers: at most one per this per download. */
  progressEventMs: 250,
});

export const DEFAULT_POLICY: Readonly<NodePolicy> = Object.freeze({
  waitForSyncMs: 30_000,
  retryAfterSeconds: 5,
  minDownloadIdleTimeoutMs: 30_000,
  maxTailingClients: 2_000,
  drainTimeoutMs: 10_000,
  cancelGraceMs: 2_000,
  closeGraceMs: 1_000,
  stopMasterWaitMs: 2_000,
  logRingLines: 1_000,
  watchIdleSeconds: 60,
  diskSpaceTtlMs: 2_000,
  trafficSampleMs: 5_000,
  trafficSamples: 180,
  settleWaitMs: 2_000,
  buildAnswerWaitMs: 10_000,
});
