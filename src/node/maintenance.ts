import type { ScrubFigures } from '../http/admin/metrics.ts';
import type { Logger } from '../log/logger.ts';
import { Scrubber, type ScrubberDeps, type ScrubReport } from '../sync/scrub.ts';
import { CronTask } from './cron-task.ts';

/**
 * Storage upkeep on the operator's schedule (maintenance.scrubSchedule, a cron expression): the
 * scrub (sync/scrub.ts) runs there, and on demand from the admin API.
 */
export class Maintenance {
  readonly scrubber: Scrubber;
  readonly #schedule: () => string;
  readonly #task: CronTask;

  /** `scrub`: what the scrub reads and hashes with; `schedule`: maintenance.scrubSchedule. */
  constructor(deps: { scrub: Omit<ScrubberDeps, 'logger'>; schedule: () => string; logger: Logger }) {
    this.scrubber = new Scrubber({ ...deps.scrub, logger: deps.logger });
    this.#schedule = deps.schedule;
    this.#task = new CronTask('scrub', deps.schedule, () => this.scrubber.run('schedule'), deps.logger);
  }

  start(): void {
    this.#task.start();
  }

  /** maintenance.scrubSchedule changed: the next run follows the new schedule. */
  reschedule(): void {
    this.#task.reschedule();
  }

  /** Starts a scrub now (or joins the one running); resolves with its report. */
  scrubNow(): Promise<ScrubReport> {
    return this.scrubber.run('manual');
  }

  /** No more scheduled runs; a scrub in progress stops at its next slice. */
  async stop(): Promise<void> {
    this.#task.stop();
    await this.scrubber.stop();
  }

  /** Whether a scrub is running now. */
  scrubbing(): boolean {
    return this.scrubber.current !== null;
  }

  /** What the scrub metrics read at scrape time. */
  scrubFigures(): ScrubFigures {
    const last = this.scrubber.last;
    return {
      totals: this.scrubber.totals,
      running: this.scrubbing(),
      last: last?.finishedAt ? { finishedAt: last.finishedAt, findings: last.findings.length } : null,
    };
  }

  /** The scrub part of /api/status. */
  scrubStatus(): ScrubStatus {
    return {
      schedule: this.#schedule(),
      next_at: this.#task.nextRunAt()?.toISOString() ?? null,
      running: reportJson(this.scrubber.current),
      last: reportJson(this.scrubber.last),
    };
  }
}

export interface ScrubStatus {
  schedule: string;
  next_at: string | null;
  running: ReturnType<typeof reportJson>;
  last: ReturnType<typeof reportJson>;
}

export function reportJson(report: ScrubReport | null) {
  if (!report) return null;
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    trigger: report.trigger,
    started_at: iso(report.startedAt),
    finished_at: iso(report.finishedAt),
    packages_checked: report.checked,
    packages_skipped: report.skipped,
    bytes_checked: report.bytes,
    paused_seconds: Math.round(report.pausedMs / 1000),
    findings: report.findings.map((f) => ({
      meeting_id: f.meetingId,
      reason: f.reason,
      expected_sha256: f.expectedSha256,
      actual_sha256: f.actualSha256,
      at: iso(f.at),
    })),
    error: report.error,
  };
}
