/**
 * Which build of a held package is current, and what follows from the answer: a probe (of the
 * master's stream, or the site seed's answer) after a token change; the start check of a preheated
 * package (same documents: served; else discarded and synced); a sibling's question to its seed.
 * One probe queue for all, and one retry schedule for unanswered checks.
 */
import type { Logger } from '../log/logger.ts';
import type { ActiveMeeting, MasterClient } from '../master/master-client.ts';
import { SYNC_POLICY, type RetryPolicy } from '../policy.ts';
import { awaitsStartCheck, isBuild } from '../store/package-state.ts';
import type { PackageStore, StoredPackage } from '../store/package-store.ts';
import { ProbeQueue, probeMasterBuild, type ProbeResult } from './build-probe.ts';
import { RetrySchedule, type RetryEntry } from './retry-schedule.ts';
import type { SiteTier } from './site-tier.ts';
import type { SyncJobs } from './sync-jobs.ts';

/** The last successful poll: the master's token and active meetings, and when. */
export interface PollRecord {
  at: number;
  token: string | null;
  meetings: ActiveMeeting[];
}

/** What the checks read of the poller: only its last successful poll decides. */
export interface PollView {
  activeMeeting(meetingId: string): ActiveMeeting | undefined;
  readonly lastSuccess: PollRecord | null;
  /** The service is stopped: nothing is acted on. */
  readonly paused: boolean;
}

export interface BuildChecksDeps {
  store: PackageStore;
  jobs: SyncJobs;
  master: () => MasterClient;
  logger: Logger;
  poll: PollView;
  /** A meeting's servable package changed (a preheat confirmed). */
  changed: (meetingId: string) => void;
  /** With the site tier on, only a package's seed probes the master; its siblings ask the seed. */
  site?: Pick<SiteTier, 'probe'>;
  /** Replaces the probe entirely (tests). */
  probe?: (meetingId: string, token: string | null) => Promise<ProbeResult>;
  /** Timeout of a probe of the master's stream (default: policy.ts). */
  probeTimeoutMs?: number;
  /** Waits before probing again after unanswered probes, and before checking a preheat again (default: policy.ts). */
  probeRetry?: RetryPolicy;
  startCheckRetry?: RetryPolicy;
  now?: () => number;
  random?: () => number;
}

/** What the probes of this process cost the master and found. */
export interface ProbeCounters {
  probes: number;
  /** Bytes read from the master by probes. */
  bytes: number;
  sameBuild: number;
  newBuild: number;
  unknown: number;
  /** Answers that came from the site's seed (no byte from the master). */
  fromSeed: number;
  /** Preheated packages served at their meeting's start (same documents as the master's new build). */
  preheatConfirmed: number;
  /** Preheated packages discarded at the start (documents changed, or no README to compare). */
  preheatDiscarded: number;
}

export class BuildChecks {
  #deps: BuildChecksDeps;
  #probes = new ProbeQueue();
  /**
   * Meetings whose last probe got no usable answer: when to ask again, how many in a row, and
   * under which token (a newer token is news: it is probed at once).
   */
  #probeRetry: RetrySchedule<{ token: string | null }>;
  #probeCounters: ProbeCounters = { probes: 0, bytes: 0, sameBuild: 0, newBuild: 0, unknown: 0, fromSeed: 0, preheatConfirmed: 0, preheatDiscarded: 0 };

  constructor(deps: BuildChecksDeps) {
    this.#deps = deps;
    this.#probeRetry = new RetrySchedule({ now: deps.now, random: deps.random });
  }

  get counters(): ProbeCounters {
    return { ...this.#probeCounters };
  }

  /** Meetings whose held build is being checked (probe running or queued). */
  pendingIds(): Set<string> {
    return this.#probes.pendingIds();
  }

  /** Whether the meeting's last check got no answer and its retry time has not come. */
  waiting(meetingId: string): boolean {
    return this.#probeRetry.waiting(meetingId);
  }

  /** Unanswered checks: the meeting, when to ask again, and under which token. */
  retries(): [string, RetryEntry & { token: string | null }][] {
    return this.#probeRetry.entries();
  }

  /** Which build is current under `token`: the site's way (seed first) when the tier is on, else a probe of the master. */
  #current(meetingId: string, token: string | null): Promise<ProbeResult> {
    if (this.#deps.probe) return this.#deps.probe(meetingId, token);
    const site = this.#deps.site;
    return site ? site.probe(meetingId, token, () => this.#probeMaster(meetingId)) : this.#probeMaster(meetingId);
  }

  #probeMaster(meetingId: string): Promise<ProbeResult> {
    return probeMasterBuild(this.#deps.master(), meetingId, { timeoutMs: this.#deps.probeTimeoutMs ?? SYNC_POLICY.probeTimeoutMs });
  }

  /**
   * Probes the master's current build of a held package: the same build → the package is
   * confirmed under the poll's token (nothing fetched); another build → fetched through the one
   * download job, the held package served until the new one is promoted; no usable answer → the
   * package is kept and probed again later.
   */
  async probe(meetingId: string, poll: PollRecord): Promise<void> {
    // The outcome is acted on inside the queue's turn, so a meeting never looks idle (no probe,
    // no job) between a probe that found a new build and the job that fetches it.
    await this.#probes.run(meetingId, async () => {
      const result = await this.#current(meetingId, poll.token);
      await this.#probed(meetingId, poll, result);
      return result;
    });
  }

  /** The start confirmation of a preheated package (a probe, joined if one is queued). Never throws. */
  startConfirm(meetingId: string, poll: PollRecord): Promise<void> {
    return this.probe(meetingId, poll).catch((error: Error) => this.#deps.logger.error(`preheat ${meetingId}: ${error.message}`));
  }

  async #probed(meetingId: string, poll: PollRecord, result: ProbeResult): Promise<void> {
    const { jobs, store, logger } = this.#deps;
    this.#probeCounters.probes++;
    this.#probeCounters.bytes += result.bytesRead;
    if (result.kind === 'identified' && result.seed !== undefined) this.#probeCounters.fromSeed++;
    const held = store.get(meetingId);
    const meeting = this.#deps.poll.activeMeeting(meetingId);
    if (!held || !meeting || this.#deps.poll.paused) return;
    if (awaitsStartCheck(held)) return this.#confirmPreheat(meetingId, held, poll, result);
    if (result.kind === 'unknown') {
      this.#probeCounters.unknown++;
      const delay = this.#probeRetry.failed(meetingId, this.#deps.probeRetry ?? SYNC_POLICY.probeRetry, { token: poll.token }).delayMs;
      logger.warn(`probe ${meetingId}: ${result.reason}; keeping the held package, asking again in ${Math.round(delay / 1000)} s`);
      return;
    }
    this.#probeRetry.clear(meetingId);
    const from = result.seed === undefined ? `${result.bytesRead} bytes read` : `as the seed ${result.seed} says`;
    // A confirmed preheat stands for the build probed at its start (same documents, other build time).
    if (isBuild(held, result.identity.buildId)) {
      this.#probeCounters.sameBuild++;
      await store.retag(meetingId, poll.token);
      logger.info(`probe ${meetingId}: the master's build is the one held (${from}); recorded under token ${poll.token}`);
      return;
    }
    this.#probeCounters.newBuild++;
    logger.info(`probe ${meetingId}: the master has a new build (${from}); fetching it (the held package is served meanwhile)`);
    jobs.ensure({ meetingId, title: meeting.title, token: poll.token, reason: 'token-changed', build: result.identity.buildId, documents: result.identity.documentsId });
  }

  /**
   * The master rebuilds a package at its meeting's start; the preheated one was built before.
   * Same README apart from its build-time line (documentsId) → the same documents: the preheated
   * bytes are served at once and stand for the new build (no second stream from the master).
   * Different, or nothing to compare → discarded and synced as usual: a stale document must never
   * reach a tablet. No usable answer → kept unserved, asked again later (tablets wait or 503).
   */
  async #confirmPreheat(meetingId: string, held: StoredPackage, poll: PollRecord, result: ProbeResult): Promise<void> {
    const { jobs, store, logger } = this.#deps;
    const meeting = this.#deps.poll.activeMeeting(meetingId);
    if (!meeting) return;
    if (result.kind === 'unknown') {
      this.#probeCounters.unknown++;
      const delay = this.#probeRetry.failed(meetingId, this.#deps.startCheckRetry ?? SYNC_POLICY.startCheckRetry, { token: poll.token }).delayMs;
      logger.warn(`preheat ${meetingId}: ${result.reason}; the preheated package waits for its check (again in ${Math.round(delay / 1000)} s)`);
      return;
    }
    this.#probeRetry.clear(meetingId);
    const same = held.documentsId !== null && result.identity.documentsId === held.documentsId;
    if (same && (await store.confirm(meetingId, this.#deps.poll.lastSuccess?.token ?? poll.token, result.identity.buildId))) {
      this.#probeCounters.preheatConfirmed++;
      logger.info(`preheat ${meetingId}: same documents as the master's build at the start; serving the preheated package`);
      this.#deps.changed(meetingId);
      return;
    }
    // Only the preheat checked here: a sync promoted meanwhile (a tablet asked) is the meeting's
    // package now, complete and current, and must not be thrown away and fetched again.
    if (!(await store.remove(meetingId, 'preheat-stale', { if: (pkg) => awaitsStartCheck(pkg) && pkg.sha256 === held.sha256 }))) {
      logger.info(`preheat ${meetingId}: replaced by the meeting's sync during the check; nothing to discard`);
      return;
    }
    this.#probeCounters.preheatDiscarded++;
    logger.info(`preheat ${meetingId}: ${same ? 'the package changed during the check' : 'the documents changed since the preheat'}; discarding it and syncing`);
    if (this.#deps.poll.activeMeeting(meetingId) && !this.#deps.poll.paused) jobs.ensure({ meetingId, title: meeting.title, token: poll.token, reason: 'new' });
  }
  /**
   * A sibling asks which build is current (it takes this node for the seed): probes the master,
   * in the one probe queue (joining a probe already waiting), and acts on the answer as after a
   * poll (same build: recorded under the token; new build: fetched). Never asks another sibling.
   */
  probeForPeer(meetingId: string): Promise<ProbeResult> {
    const poll = this.#deps.poll.lastSuccess;
    if (!poll || this.#deps.poll.paused || !this.#deps.store.get(meetingId) || !this.#deps.poll.activeMeeting(meetingId)) {
      return Promise.resolve({ kind: 'unknown', reason: 'not held or not active here', bytesRead: 0 });
    }
    return this.#probes.run(meetingId, async () => {
      const result = await this.#probeMaster(meetingId);
      await this.#probed(meetingId, this.#deps.poll.lastSuccess ?? poll, result);
      return result;
    });
  }
}
