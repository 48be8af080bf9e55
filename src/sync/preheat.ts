import type { Logger } from '../log/logger.ts';
import { SYNC_POLICY, type RetryPolicy } from '../policy.ts';
import type { MasterClient } from '../master/master-client.ts';
import type { PackageStore, StoredPackage } from '../store/package-store.ts';
import { planPreheat, preheatCandidates, type PreheatCandidate, type PreheatWindow } from './preheat-plan.ts';
import { awaitsStartCheck } from '../store/package-state.ts';
import { yieldsToSyncs, type FetchView } from './fetch-view.ts';
import { RetrySchedule } from './retry-schedule.ts';
import type { SyncJobs } from './sync-jobs.ts';
import type { Reconciler } from './reconciler.ts';

export interface PreheatSettings extends PreheatWindow {
  enabled: boolean;
}

export interface PreheaterDeps {
  master: () => MasterClient;
  jobs: SyncJobs;
  store: PackageStore;
  sync: Pick<Reconciler, 'activeMeetings' | 'lastSuccess' | 'events'>;
  settings: () => PreheatSettings;
  logger: Logger;
  /** False while the operator has stopped the service: no preheat starts. */
  serving?: () => boolean;
  /** The backoff after a failed preheat (default: policy.ts SYNC_POLICY.preheatRetry). */
  retry?: RetryPolicy;
  now?: () => number;
  random?: () => number;
}

/**
 * waiting: in the window, not fetched yet; preheating: its download runs; ready: held, waiting for
 * the start; stale: the start found other documents than the preheated ones (discarded, syncing).
 */
export type PreheatStateName = 'waiting' | 'preheating' | 'ready' | 'stale';

export interface UpcomingMeeting {
  id: string;
  title: string;
  /** The master's scheduled time, as it gave it (its local time) and as an instant. */
  time: string;
  timeMs: number;
  preheat: PreheatStateName;
  /** Bytes held (ready) or fetched so far (preheating); null otherwise. */
  size: number | null;
  /** The last failed preheat, if any, and when it is tried again. */
  lastError: { message: string; at: number; retryAt: number } | null;
}

export interface PreheatCounters {
  scans: number;
  scanFailures: number;
  started: number;
  completed: number;
  failed: number;
  /** Preheats stopped because a sync needed the master's stream, or the meeting left the window. */
  cancelled: number;
  removed: number;
}

/**
 * Fetches, ahead of time, the packages of meetings scheduled soon (preheat-plan.ts): one at a time,
 * only while nothing else downloads, through the same SyncJobs machinery as a sync (temp file, zip
 * check, promotion, quota guard), stored as source 'preheat' (not served, not reported synced).
 * A sync that starts while a preheat runs stops the preheat: the master's stream goes to the room
 * that needs it now; the preheat starts over once the node is idle again.
 */
export class Preheater {
  #deps: PreheaterDeps;
  #now: () => number;
  #random: () => number;
  #candidates: PreheatCandidate[] = [];
  /**
   * Meetings the last scan found started. The scan and the sync's poll read the master at
   * different moments: a preheat whose start only the scan has seen is the poll's to confirm.
   */
  #started = new Set<string>();
  #retry: RetrySchedule<{ message: string; failedAt: number }>;
  /** Meetings whose preheated package the start found stale: shown until their sync ends. */
  #stale = new Set<string>();
  #lastScan: { at: number; ok: boolean; error: string | null } | null = null;
  #counters: PreheatCounters = { scans: 0, scanFailures: 0, started: 0, completed: 0, failed: 0, cancelled: 0, removed: 0 };
  #advancing: Promise<void> | null = null;
  #advanceAgain = false;
  #closed = false;

  constructor(deps: PreheaterDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
    this.#random = deps.random ?? Math.random;
    this.#retry = new RetrySchedule({ now: this.#now, random: this.#random });
    deps.jobs.events.on('started', (job) => {
      if (!yieldsToSyncs(job)) this.#yieldTo(job);
    });
    deps.jobs.events.on('succeeded', (job) => {
      if (yieldsToSyncs(job)) {
        this.#counters.completed++;
        this.#retry.clear(job.meetingId);
      } else this.#stale.delete(job.meetingId);
      this.advance();
    });
    deps.jobs.events.on('failed', (job, failure) => {
      if (yieldsToSyncs(job)) {
        if (failure.code === 'CANCELLED') this.#counters.cancelled++;
        else {
          this.#counters.failed++;
          this.#retry.failed(job.meetingId, this.#deps.retry ?? SYNC_POLICY.preheatRetry, { message: failure.message, failedAt: this.#now() });
        }
      }
      this.advance();
    });
    deps.store.events.on('change', (event) => {
      if (event.type === 'removed' && event.reason === 'preheat-stale') this.#stale.add(event.meetingId);
    });
    // A poll may have ended a sync's reason to run (or started one): look again.
    deps.sync.events.on('polled', () => this.advance());
  }

  get counters(): PreheatCounters {
    return { ...this.#counters };
  }

  get lastScan(): { at: number; ok: boolean; error: string | null } | null {
    return this.#lastScan;
  }

  /** Reads the master's meeting list and acts on it (the cron task's run). */
  async scan(): Promise<void> {
    const settings = this.#deps.settings();
    if (!settings.enabled || this.#closed) {
      this.#candidates = [];
      await this.advance();
      return;
    }
    this.#counters.scans++;
    try {
      const meetings = await this.#deps.master().listMeetings(AbortSignal.timeout(SYNC_POLICY.meetingListTimeoutMs));
      this.#candidates = preheatCandidates(meetings, this.#now(), settings);
      this.#started = new Set(meetings.filter((m) => m.status === 'active').map((m) => m.id));
      this.#lastScan = { at: this.#now(), ok: true, error: null };
    } catch (error) {
      // The old list stands: a master that cannot answer now removes nothing.
      this.#counters.scanFailures++;
      const message = (error as Error).message;
      if (this.#lastScan?.error !== message) this.#deps.logger.warn(`preheat: cannot read the master's meeting list: ${message}`);
      this.#lastScan = { at: this.#now(), ok: false, error: message };
      return;
    }
    await this.advance();
  }

  /** Stops for good (the node stops): no preheat starts, the running one is cancelled (it would only delay the stop). */
  close(): void {
    this.#closed = true;
    for (const job of this.#deps.jobs.jobs()) if (yieldsToSyncs(job) && !job.settled) this.#deps.jobs.cancel(job.meetingId, 'node stopping');
  }

  /** Executes the plan: remove what is no longer wanted, start the next preheat if idle. */
  advance(): Promise<void> {
    if (this.#advancing) {
      this.#advanceAgain = true;
      return this.#advancing;
    }
    this.#advancing = (async () => {
      do {
        this.#advanceAgain = false;
        try {
          await this.#advanceOnce();
        } catch (error) {
          this.#deps.logger.error(`preheat: ${(error as Error).message}`);
        }
      } while (this.#advanceAgain);
    })().finally(() => {
      this.#advancing = null;
    });
    return this.#advancing;
  }

  /** The master lists the meeting as not started, scheduled within the preheat window. */
  isScheduled(meetingId: string): boolean {
    return this.#candidates.some((c) => c.id === meetingId);
  }

  /** The meetings in the window and how far their preheat is, soonest first. */
  upcoming(): UpcomingMeeting[] {
    const { jobs, store } = this.#deps;
    const active = new Set(this.#deps.sync.activeMeetings().map((m) => m.id));
    const rows: UpcomingMeeting[] = [];
    for (const candidate of this.#candidates) {
      if (active.has(candidate.id)) continue;
      const job = jobs.inFlight(candidate.id);
      const held = store.get(candidate.id);
      const retry = this.#retry.get(candidate.id);
      const preheating = job !== undefined && yieldsToSyncs(job) && job.state === 'running';
      rows.push({
        id: candidate.id,
        title: candidate.title,
        time: candidate.time,
        timeMs: candidate.timeMs,
        preheat: preheating ? 'preheating' : held && awaitsStartCheck(held) ? 'ready' : 'waiting',
        size: preheating ? job.bytesWritten : held && awaitsStartCheck(held) ? held.size : null,
        lastError: retry ? { message: retry.message, at: retry.failedAt, retryAt: retry.at } : null,
      });
    }
    for (const id of this.#stale) {
      const candidate = this.#candidates.find((c) => c.id === id);
      const meeting = this.#deps.sync.activeMeetings().find((m) => m.id === id);
      if (!meeting) continue;
      rows.push({ id, title: meeting.title, time: candidate?.time ?? '', timeMs: candidate?.timeMs ?? 0, preheat: 'stale', size: null, lastError: null });
    }
    return rows;
  }

  /** A sync started: a running preheat gives the master's stream back (it restarts when idle). */
  #yieldTo(sync: FetchView): void {
    for (const job of this.#deps.jobs.jobs()) {
      if (yieldsToSyncs(job) && !job.settled && job.meetingId !== sync.meetingId) {
        this.#deps.logger.info(`preheat ${job.meetingId}: paused for the sync of ${sync.meetingId}; it starts over when the node is idle`);
        this.#deps.jobs.cancel(job.meetingId, `the sync of ${sync.meetingId} needs the master`);
      }
    }
  }

  async #advanceOnce(): Promise<void> {
    const { jobs, store, logger } = this.#deps;
    const settings = this.#deps.settings();
    const serving = this.#deps.serving?.() ?? true;
    const candidates = settings.enabled && !this.#closed ? this.#candidates : [];
    const all = jobs.jobs().filter((j) => !j.settled);
    const plan = planPreheat({
      candidates,
      active: new Set([...this.#deps.sync.activeMeetings().map((m) => m.id), ...this.#started]),
      preheated: new Set(store.list().filter(awaitsStartCheck).map((p) => p.meetingId)),
      held: new Set(store.list().map((p) => p.meetingId)),
      preheating: new Set(all.filter(yieldsToSyncs).map((j) => j.meetingId)),
      inFlight: new Set(all.map((j) => j.meetingId)),
      retryAt: new Map(this.#retry.entries().map(([id, r]) => [id, r.at])),
      now: this.#now(),
    });
    // Until the first successful poll, "not active" is unknown: remove nothing yet.
    const known = this.#deps.sync.lastSuccess !== null;
    for (const id of plan.cancel) {
      if (!known) break;
      logger.info(`preheat ${id}: the meeting left the preheat window (or was deleted); stopping its preheat`);
      jobs.forget(id, 'meeting no longer scheduled in the preheat window');
    }
    for (const id of plan.remove) {
      if (!known) break;
      // Looked at again at the last moment: a start confirmed during the removals before this one
      // made the package the meeting's sync.
      const stillPreheat = (pkg: StoredPackage) => awaitsStartCheck(pkg) && !this.#deps.sync.activeMeetings().some((m) => m.id === id);
      if (await store.remove(id, 'preheat-unscheduled', { if: stillPreheat })) {
        this.#counters.removed++;
        logger.info(`preheat ${id}: the meeting was deleted, ended or moved out of the window; preheated package removed`);
      }
    }
    if (plan.next && serving && !this.#closed && this.#deps.sync.lastSuccess && !this.#deps.sync.activeMeetings().some((m) => m.id === plan.next!.id)) {
      const next = plan.next;
      this.#counters.started++;
      logger.info(`preheat ${next.id}: fetching the package of "${next.title}" (scheduled ${next.time}) before it starts`);
      jobs.ensure({ meetingId: next.id, title: next.title, token: null, reason: 'preheat' });
    }
  }
}
