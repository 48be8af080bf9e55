import { createTask, validate, type ScheduledTask } from 'node-cron';
import type { Logger } from '../log/logger.ts';

/** Whether node-cron accepts this expression (5 fields, or 6 with seconds). */
export function isCronExpression(expression: string): boolean {
  return typeof expression === 'string' && validate(expression);
}

/**
 * A task on an operator-set cron schedule (node-cron), for work that belongs to hours of the day
 * rather than to an interval: preheating packages, scrubbing storage. Runs never overlap; a run
 * the schedule missed (the box was busy) is logged, not made up, since the next one comes anyway.
 * Polls and heartbeats stay on PeriodicTask (scheduler.ts), which cannot skip.
 */
export class CronTask {
  readonly name: string;
  #expression: () => string;
  #run: () => Promise<unknown>;
  #logger: Logger;
  #task: ScheduledTask | null = null;
  #running: Promise<void> | null = null;

  constructor(name: string, expression: () => string, run: () => Promise<unknown>, logger: Logger) {
    this.name = name;
    this.#expression = expression;
    this.#run = run;
    this.#logger = logger;
  }

  get started(): boolean {
    return this.#task !== null;
  }

  start(): void {
    if (this.#task) return;
    const expression = this.#expression();
    const task = createTask(expression, () => this.runNow(), {
      name: this.name,
      noOverlap: true,
      unref: true,
      logger: {
        info: () => {},
        debug: () => {},
        warn: (message) => this.#logger.warn(`${this.name}: ${message}`),
        error: (message) => this.#logger.error(`${this.name}: ${message instanceof Error ? message.message : message}`),
      },
    });
    task.on('execution:missed', () => {
      this.#logger.warn(`${this.name}: a scheduled run was missed (the node was busy); the next one runs as planned`);
    });
    void task.start();
    this.#task = task;
  }

  stop(): void {
    const task = this.#task;
    this.#task = null;
    if (task) void task.destroy();
  }

  /** The schedule changed: apply it from now. */
  reschedule(): void {
    if (!this.#task) return;
    this.stop();
    this.start();
  }

  /** When the schedule runs next; null when stopped. */
  nextRunAt(): Date | null {
    return this.#task?.getNextRun() ?? null;
  }

  /** Runs now, or joins the run in progress. Errors are logged, never thrown. */
  runNow(): Promise<void> {
    this.#running ??= (async () => {
      try {
        await this.#run();
      } catch (error) {
        this.#logger.error(`${this.name}: ${(error as Error).message}`);
      } finally {
        this.#running = null;
      }
    })();
    return this.#running;
  }

  /** Waits for a run in progress, if any. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }
}
