/**
 * The gate a tablet's request passes before it is answered: it waits, bounded, until the node
 * knows what to do with the id. The reconciler owns the polls and checks; this module decides
 * which one a request waits for, and keeps requests for made-up ids from turning into polls.
 */
import { SYNC_POLICY } from '../policy.ts';
import { settledWithin } from '../time-limit.ts';
import type { ActiveMeeting } from '../master/master-client.ts';
import { awaitsStartCheck } from '../store/package-state.ts';
import type { PackageStore } from '../store/package-store.ts';
import type { BuildChecks, PollRecord } from './build-checks.ts';
import type { SyncJobs } from './sync-jobs.ts';

/** What the gate reads of the reconciler: its last poll, a poll in progress, and a new poll. */
export interface GatedPolls {
  readonly paused: boolean;
  readonly lastSuccess: PollRecord | null;
  /** The poll running now, if any. */
  readonly pollInProgress: Promise<boolean> | null;
  pollNow(): Promise<boolean>;
  activeMeeting(meetingId: string): ActiveMeeting | undefined;
  isServable(meetingId: string): boolean;
}

export interface RequestGateDeps {
  polls: GatedPolls;
  checks: Pick<BuildChecks, 'waiting' | 'startConfirm' | 'probe'>;
  store: Pick<PackageStore, 'get'>;
  jobs: Pick<SyncJobs, 'inFlight'>;
  now: () => number;
  /** Minimum gap between extra polls triggered by requests for ids not seen yet (default: policy.ts). */
  unknownIdRefreshMs?: number;
  /** Ids the master lists as not started yet (the preheat's scan). */
  scheduled?: (meetingId: string) => boolean;
}

export class RequestGate {
  #deps: RequestGateDeps;
  #lastUnknownRefresh = 0;
  /** The next unknown-id check, when a request waits for one after the gap (shared by all). */
  #nextRefresh: Promise<unknown> | null = null;

  constructor(deps: RequestGateDeps) {
    this.#deps = deps;
  }

  get #gap(): number {
    return this.#deps.unknownIdRefreshMs ?? SYNC_POLICY.unknownIdRefreshMs;
  }

  /**
   * Waits, at most `maxWaitMs`, until the node knows what to do with the id. For an id not active
   * here, one shared poll (joined by every request while it runs; at most one per
   * unknownIdRefreshMs for all requests together, so a flood of bogus ids cannot turn into a flood
   * of polls), so a tablet asking the moment its meeting starts is served rather than told 404.
   * For a preheated package of an active meeting, its start confirmation. For a package not yet
   * confirmed under the master's current token, its check, moved to the front of the probe queue
   * (one check, shared by every request): a token change may mean a newer build, and the older
   * one must not be served once the node could know (issue 18).
   */
  async settle(meetingId: string, maxWaitMs: number): Promise<void> {
    const { polls, checks, jobs } = this.#deps;
    if (polls.paused) return;
    let pending: Promise<unknown> | undefined;
    if (!polls.activeMeeting(meetingId)) {
      const sinceLast = this.#deps.now() - this.#lastUnknownRefresh;
      if (polls.pollInProgress) pending = polls.pollInProgress;
      else if (sinceLast >= this.#gap) {
        this.#lastUnknownRefresh = this.#deps.now();
        pending = polls.pollNow();
      } else if (this.#expectedToStart(meetingId)) {
        // The last check may predate the start: wait for the next one rather than answer 404 from
        // it. Only for meetings the master scheduled or the node preheated, so a flood of made-up
        // ids is still answered from the last check at once.
        pending = this.#refreshAfter(this.#gap - sinceLast);
      }
      if (pending) await settledWithin(pending, maxWaitMs);
    }
    const poll = polls.lastSuccess;
    // Not again while a sync of it runs, or after a check that got no answer (until its retry time):
    // each check makes the master read the whole package.
    const waiting = checks.waiting(meetingId) || jobs.inFlight(meetingId) !== undefined;
    if (poll && !waiting && polls.activeMeeting(meetingId) && this.#awaitsStartCheck(meetingId)) {
      await settledWithin(checks.startConfirm(meetingId, poll), maxWaitMs);
    } else if (poll && this.awaitsTokenCheck(meetingId)) {
      await settledWithin(checks.probe(meetingId, poll, { urgent: true }).catch(() => {}), maxWaitMs);
    }
  }

  /**
   * A servable package of an active meeting not yet confirmed under the last poll's token, whose
   * check may run now (not while a sync of it runs, nor before the retry time of a check that got
   * no answer): a tablet's request waits for that check (settle) before it is served.
   */
  awaitsTokenCheck(meetingId: string): boolean {
    const { polls } = this.#deps;
    const poll = polls.lastSuccess;
    const held = this.#deps.store.get(meetingId);
    if (polls.paused || !poll || !held || held.token === poll.token || !polls.isServable(meetingId) || !polls.activeMeeting(meetingId)) return false;
    return !this.#deps.checks.waiting(meetingId) && this.#deps.jobs.inFlight(meetingId) === undefined;
  }

  /**
   * A poll in the background, rate-limited with the unknown-id checks (a sibling asked under a
   * newer token than this node's, say): news worth a poll, but never a flood of them.
   */
  async refreshSoon(): Promise<void> {
    const { polls } = this.#deps;
    if (polls.paused || polls.pollInProgress || this.#deps.now() - this.#lastUnknownRefresh < this.#gap) return;
    this.#lastUnknownRefresh = this.#deps.now();
    await polls.pollNow();
  }

  #awaitsStartCheck(meetingId: string): boolean {
    const held = this.#deps.store.get(meetingId);
    return held !== undefined && awaitsStartCheck(held);
  }

  #expectedToStart(meetingId: string): boolean {
    return this.#awaitsStartCheck(meetingId) || (this.#deps.scheduled?.(meetingId) ?? false);
  }

  /** One unknown-id check `delayMs` from now, shared by every request that waits for it. */
  #refreshAfter(delayMs: number): Promise<unknown> {
    this.#nextRefresh ??= new Promise((resolve) => setTimeout(resolve, delayMs)).then(() => {
      this.#nextRefresh = null;
      const { polls } = this.#deps;
      if (polls.paused) return false;
      if (polls.pollInProgress) return polls.pollInProgress;
      this.#lastUnknownRefresh = this.#deps.now();
      return polls.pollNow();
    });
    return this.#nextRefresh;
  }
}
