import { EventEmitter } from 'node:events';
import type { Logger } from '../log/logger.ts';
import { MasterError, type ActiveMeeting, type MasterClient, type MeetingStatus } from '../master/master-client.ts';
import { awaitsStartCheck, buildsOf, mayBeServed } from '../store/package-state.ts';
import type { PackageStore } from '../store/package-store.ts';
import { RequestGate } from './request-gate.ts';
import { BuildChecks, type BuildChecksDeps, type PollRecord, type ProbeCounters } from './build-checks.ts';
import type { ProbeResult } from './build-probe.ts';
import { initialMemory, reconcile, type ReconcileMemory, type ReconcilePolicy, type SyncAction } from './reconcile.ts';
import { yieldsToSyncs, type FetchView } from './fetch-view.ts';
import type { SyncJobs } from './sync-jobs.ts';

export type { PollRecord, ProbeCounters } from './build-checks.ts';

export interface ReconcilerDeps extends Pick<BuildChecksDeps, 'site' | 'probe' | 'probeTimeoutMs' | 'probeRetry' | 'startCheckRetry' | 'random'> {
  store: PackageStore;
  jobs: SyncJobs;
  master: () => MasterClient;
  policy: () => ReconcilePolicy;
  logger: Logger;
  now?: () => number;
  /** Minimum gap between extra polls triggered by requests for ids not seen yet (default: policy.ts). */
  unknownIdRefreshMs?: number;
  /**
   * Ids of meetings the master lists as not started yet (the preheat's scan): a request for one is
   * a tablet whose meeting has just started, so it waits for a check made after it arrived.
   */
  scheduled?: (meetingId: string) => boolean;
  /** Storage quota (QuotaGuard): enforced after each successful poll, never after a failed one. */
  quota?: { enforce(): Promise<unknown> };
}

/**
 * Polls the master, runs the pure reconcile() and executes its actions. Keeps the last successful
 * poll (token, active list, time): only that decides what may be fetched or served.
 */
export class Reconciler {
  readonly events = new EventEmitter<{ polling: []; polled: [PollRecord]; pollFailed: [Error]; changed: [string] }>();
  #deps: ReconcilerDeps;
  #now: () => number;
  #memory: ReconcileMemory = initialMemory;
  #lastSuccess: PollRecord | null = null;
  #lastAttemptAt: number | null = null;
  #lastError: { message: string; at: number } | null = null;
  #polling: Promise<boolean> | null = null;
  #nextPoll: Promise<boolean> | null = null;
  #paused = false;
  #checks: BuildChecks;
  #gate: RequestGate;

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#checks = new BuildChecks({ ...deps, now: this.#now, poll: this, changed: (meetingId) => this.events.emit('changed', meetingId) });
    this.#gate = new RequestGate({ polls: this, checks: this.#checks, store: deps.store, jobs: deps.jobs, now: this.#now, unknownIdRefreshMs: deps.unknownIdRefreshMs, scheduled: deps.scheduled });
    deps.jobs.events.on('succeeded', (job) => {
      if (yieldsToSyncs(job)) {
        // Finished just as its meeting started: confirm it now rather than at the next check.
        const meeting = this.activeMeeting(job.meetingId);
        const poll = this.#lastSuccess;
        if (meeting && poll && !this.#paused) this.#checks.startConfirm(job.meetingId, poll);
        return;
      }
      // A restarted meeting's fresh package is current again.
      if (this.#memory.endedHeld.has(job.meetingId)) {
        const endedHeld = new Set(this.#memory.endedHeld);
        endedHeld.delete(job.meetingId);
        this.#memory = { ...this.#memory, endedHeld };
      }
      this.events.emit('changed', job.meetingId);
    });
    deps.store.events.on('change', (event) => {
      if (event.type === 'removed') this.events.emit('changed', event.meetingId);
    });
  }

  get lastSuccess(): PollRecord | null {
    return this.#lastSuccess;
  }

  get lastAttemptAt(): number | null {
    return this.#lastAttemptAt;
  }

  get lastError(): { message: string; at: number } | null {
    return this.#lastError;
  }

  get probeCounters(): ProbeCounters {
    return this.#checks.counters;
  }

  /** Meetings whose held build is being checked (probe running or queued). */
  probingIds(): Set<string> {
    return this.#checks.pendingIds();
  }

  /** Paused (service stopped): polls do nothing and no new jobs start. */
  setPaused(paused: boolean): void {
    this.#paused = paused;
  }

  get paused(): boolean {
    return this.#paused;
  }

  activeMeetings(): ActiveMeeting[] {
    return this.#lastSuccess?.meetings ?? [];
  }

  /** The active meetings' ids; null before the first successful poll (nothing may be evicted on an unknown active set). */
  knownActiveIds(): Set<string> | null {
    return this.#lastSuccess ? new Set(this.#lastSuccess.meetings.map((m) => m.id)) : null;
  }

  activeMeeting(meetingId: string): ActiveMeeting | undefined {
    return this.#lastSuccess?.meetings.find((m) => m.id === meetingId);
  }

  /**
   * Held, not a preheat its meeting's start has not confirmed, and not a leftover of an earlier
   * activation of a meeting that restarted.
   */
  isServable(meetingId: string): boolean {
    const held = this.#deps.store.get(meetingId);
    if (!held || !mayBeServed(held)) return false;
    return !(this.#memory.endedHeld.has(meetingId) && this.activeMeeting(meetingId));
  }

  /** Active meetings whose complete package is here and servable now (for synced_meetings). */
  syncedMeetingIds(): string[] {
    return this.activeMeetings()
      .filter((m) => this.isServable(m.id))
      .map((m) => m.id);
  }

  /**
   * Polls and reconciles, in a poll that starts after this call: one already running may have
   * read storage before what made the caller ask (a package quarantined, say), so the caller gets
   * the next one. Callers while that one waits share it. Resolves false if the poll failed.
   */
  pollNow(): Promise<boolean> {
    if (this.#polling) {
      this.#nextPoll ??= this.#polling.then(() => {
        this.#nextPoll = null;
        return this.pollNow();
      });
      return this.#nextPoll;
    }
    this.#polling = this.#pollAndReconcile().finally(() => {
      this.#polling = null;
    });
    return this.#polling;
  }

  /**
   * The quick check between polls (watchInterval): one status request, and a reconcile only when
   * the master's token or active list differs from the last poll's, so a started meeting is
   * fetched within seconds while the full poll keeps its operator-set interval. Quiet on failure:
   * the regular poll is the one that reports an unreachable master (no log line every 2 s).
   * Resolves true when it found a change and reconciled.
   */
  async watch(): Promise<boolean> {
    if (this.#paused || this.#polling || !this.#lastSuccess) return false;
    let status: MeetingStatus;
    const client = this.#deps.master();
    try {
      status = await client.getMeetingStatus();
    } catch {
      return false;
    }
    if (client !== this.#deps.master()) return false;
    const last = this.#lastSuccess;
    if (this.#paused || this.#polling || !last || sameStatus(last, status)) return false;
    this.#deps.logger.info('watch: the master\'s active meetings changed; reconciling before the next poll');
    this.#polling = this.#pollAndReconcile(status).finally(() => {
      this.#polling = null;
    });
    return this.#polling;
  }

  /** A tablet's request waits, at most `maxWaitMs`, until the node knows what to do with the id (request-gate.ts). */
  settleRequest(meetingId: string, maxWaitMs: number): Promise<void> {
    return this.#gate.settle(meetingId, maxWaitMs);
  }

  /** The held package waits for its check under the master's current token (request-gate.ts). */
  awaitsTokenCheck(meetingId: string): boolean {
    return this.#gate.awaitsTokenCheck(meetingId);
  }

  /** The held package is older than the master's build and the new one downloads: tablets join the download. */
  replacing(meetingId: string): boolean {
    return this.#checks.replacing(meetingId);
  }

  /** A background poll, rate-limited with the requests for unknown ids (request-gate.ts). */
  refreshSoon(): Promise<void> {
    return this.#gate.refreshSoon();
  }

  /** The poll running now, if any. */
  get pollInProgress(): Promise<boolean> | null {
    return this.#polling;
  }

  /**
   * A sibling asks which build is current (it takes this node for the seed): probes the master,
   * in the one probe queue, and acts on the answer as after a poll (build-checks.ts).
   */
  probeForPeer(meetingId: string): Promise<ProbeResult> {
    return this.#checks.probeForPeer(meetingId);
  }

  /** The meeting's download running or waiting, if any. */
  inFlight(meetingId: string): FetchView | undefined {
    return this.#deps.jobs.inFlight(meetingId);
  }

  /**
   * Starts (or joins) the download of an active meeting for a waiting tablet, or for a sibling
   * node (`forPeer`: a download started for it comes from the master, never from another sibling).
   */
  requestSync(meetingId: string, options: { forPeer?: boolean } = {}): FetchView | undefined {
    const meeting = this.activeMeeting(meetingId);
    if (!meeting || this.#paused) return this.#deps.jobs.inFlight(meetingId);
    return this.#deps.jobs.ensure({
      meetingId,
      title: meeting.title,
      token: this.#lastSuccess?.token ?? null,
      reason: 'requested',
      urgent: true,
      forPeer: options.forPeer,
    });
  }

  /** `fetched`: a status the watch already got (it counts as this poll's answer). */
  async #pollAndReconcile(fetched?: MeetingStatus): Promise<boolean> {
    if (this.#paused) return false;
    const { logger } = this.#deps;
    this.#lastAttemptAt = this.#now();
    this.events.emit('polling');
    let status: MeetingStatus;
    const client = this.#deps.master();
    try {
      status = fetched ?? (await client.getMeetingStatus());
    } catch (error) {
      const message = error instanceof MasterError ? error.message : `status poll failed: ${(error as Error).message}`;
      if (this.#lastError?.message !== message) logger.warn(`poll: ${message}; keeping ${this.#deps.store.list().length} package(s), evicting nothing`);
      this.#lastError = { message, at: this.#now() };
      this.events.emit('pollFailed', error as Error);
      return false;
    }
    if (this.#paused) return false;
    // The master was changed while this poll waited: the answer is the old master's list, which
    // must not decide what is fetched or evicted; the change's own poll follows at once.
    if (!fetched && client !== this.#deps.master()) return false;
    if (this.#lastError) logger.info('poll: master reachable again');
    this.#lastError = null;
    if (status.rejectedIds.length) logger.warn(`poll: ignoring invalid meeting id(s) from master: ${status.rejectedIds.join(', ')}`);
    const record: PollRecord = { at: this.#now(), token: status.token, meetings: status.meetings };
    const previousToken = this.#lastSuccess?.token;
    this.#lastSuccess = record;
    if (previousToken !== undefined && previousToken !== status.token) logger.info(`poll: token changed to ${status.token}`);

    const { jobs, store } = this.#deps;
    const retryAt = new Map<string, number>();
    for (const [id, failure] of jobs.failures()) retryAt.set(id, failure.retryAt);
    for (const [id, retry] of this.#checks.retries()) {
      if (retry.token === record.token) retryAt.set(id, Math.max(retry.at, retryAt.get(id) ?? 0));
    }
    const result = reconcile({
      now: this.#now(),
      poll: record,
      held: store.list().map((p) => ({ meetingId: p.meetingId, token: p.token, preheated: awaitsStartCheck(p) })),
      inFlight: jobs.inFlightIds(),
      preheating: new Set(jobs.jobs().filter((j) => !j.settled && yieldsToSyncs(j)).map((j) => j.meetingId)),
      probing: this.#checks.pendingIds(),
      retryAt,
      memory: this.#memory,
      policy: this.#deps.policy(),
    });
    this.#memory = result.memory;
    for (const action of result.actions) {
      try {
        await this.#execute(action, record);
      } catch (error) {
        logger.error(`sync: ${action.type} ${action.meetingId} failed: ${(error as Error).message}`);
      }
    }
    if (this.#deps.quota) {
      try {
        await this.#deps.quota.enforce();
      } catch (error) {
        logger.error(`quota: enforcement failed: ${(error as Error).message}`);
      }
    }
    this.events.emit('polled', record);
    return true;
  }

  async #execute(action: SyncAction, poll: PollRecord): Promise<void> {
    const { jobs, store, logger } = this.#deps;
    switch (action.type) {
      case 'fetch':
        logger.info(`sync ${action.meetingId}: fetching (${action.reason})`);
        jobs.ensure({ meetingId: action.meetingId, title: action.title, token: poll.token, reason: action.reason, notBuilds: this.#heldBefore(action) });
        return;
      case 'probe':
        // Not awaited: probes queue one at a time and the poll goes on.
        void this.#checks.probe(action.meetingId, poll).catch((error: Error) => logger.error(`probe ${action.meetingId}: ${error.message}`));
        return;
      case 'confirm':
        logger.info(`preheat ${action.meetingId}: the meeting started; checking the preheated package against the master's new build`);
        void this.#checks.startConfirm(action.meetingId, poll);
        return;
      case 'cancel':
        logger.info(`sync ${action.meetingId}: meeting no longer active, cancelling its download`);
        jobs.forget(action.meetingId, 'meeting no longer active');
        return;
      case 'evict':
        jobs.forget(action.meetingId, 'meeting ended');
        if (await store.remove(action.meetingId, action.reason)) {
          logger.info(`evict ${action.meetingId}: ${action.reason === 'ended' ? 'meeting ended' : 'not active at start-up'}`);
        }
        return;
    }
  }

  /**
   * A meeting seen to end and start again has a new build: the one held is not it, whatever a
   * sibling that missed the restart still serves under the current token.
   */
  #heldBefore(action: { meetingId: string; reason: string }): string[] {
    const held = action.reason === 'restarted' ? this.#deps.store.get(action.meetingId) : undefined;
    return held ? buildsOf(held) : [];
  }
}

/** Same token and the same active meetings (ids and titles, in any order). */
function sameStatus(last: PollRecord, status: MeetingStatus): boolean {
  if (last.token !== status.token || last.meetings.length !== status.meetings.length) return false;
  const titles = new Map(last.meetings.map((m) => [m.id, m.title]));
  return status.meetings.every((m) => titles.has(m.id) && titles.get(m.id) === m.title);
}
