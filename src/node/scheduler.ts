import type { Logger } from '../log/logger.ts';

/**
 * A periodic task as a self-pacing setTimeout chain: the next run is scheduled when the previous
 * one finished, so runs never overlap, and a changed interval applies at once (reschedule).
 * Not node-cron: the intervals (10–3600 s) are not cron-expressible in general, and node-cron v4
 * silently skips "missed" runs on a busy box (node-cron#485), which for a heartbeat means the
 * master drops the node.
 */
export class PeriodicTask {
  readonly name: string;
  #intervalMs: () => number;
  #run: () => Promise<unknown>;
  #logger: Logger;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #started = false;
  /** When the pending timer fires. */
  #dueAt: number | null = null;

  constructor(name: string, intervalMs: () => number, run: () => Promise<unknown>, logger: Logger) {
    this.name = name;
    this.#intervalMs = intervalMs;
    this.#run = run;
    this.#logger = logger;
  }

  get started(): boolean {
    return this.#started;
  }

  /**
   * When the next run starts: the timer's time, or while a run is in progress, one interval from
   * now (the next is scheduled when it ends, so it can only be later). Null when stopped.
   */
  get nextRunAt(): number | null {
    if (!this.#started) return null;
    if (this.#running) return Date.now() + this.#intervalMs();
    return this.#dueAt;
  }

  /** Starts the chain; the first run happens after `initialDelayMs` (default: at once). */
  start(initialDelayMs = 0): void {
    if (this.#started) return;
    this.#started = true;
    this.#schedule(initialDelayMs);
  }

  stop(): void {
    this.#started = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#dueAt = null;
  }

  /** The interval changed: count the new one from now. */
  reschedule(): void {
    if (this.#started && !this.#running) this.#schedule(this.#intervalMs());
  }

  /** Runs now (or right after the current run, once), and resets the interval. */
  runNow(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#dueAt = null;
    this.#running = this.#execute();
    return this.#running;
  }

  /** Waits for a run in progress, if any. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #execute(): Promise<void> {
    try {
      do {
        this.#again = false;
        try {
          await this.#run();
        } catch (error) {
          this.#logger.error(`${this.name}: ${(error as Error).message}`);
        }
      } while (this.#again && this.#started);
    } finally {
      this.#running = null;
      if (this.#started) this.#schedule(this.#intervalMs());
    }
  }

  #schedule(delayMs: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#dueAt = Date.now() + delayMs;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#dueAt = null;
      void this.runNow();
    }, delayMs);
    this.#timer.unref?.();
  }
}
