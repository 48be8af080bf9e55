import { yieldsToSyncs } from './fetch-view.ts';
import type { SyncJob } from './sync-job.ts';

/**
 * The fetch slots: at most `limit()` syncs transfer at once, tablets' (urgent) ones served
 * first. Preheats form a class of their own: one at a time, only while no sync runs or waits, never
 * holding a slot a sync needs.
 */
export class FetchSlots {
  #limit: () => number;
  #waiting: Array<() => void> = [];
  #urgentWaiting: Array<() => void> = [];
  /** Preheat jobs waiting: they get a slot only when no other job runs or waits. */
  #backgroundWaiting: Array<() => void> = [];
  #running = 0;
  /** Preheats running (outside the limit: they never hold a slot another job needs). */
  #backgroundRunning = 0;

  constructor(limit: () => number) {
    this.#limit = limit;
  }

  /** Waits for a slot (a preheat: for the node to be idle); rejects if the job is cancelled meanwhile. */
  async acquire(job: SyncJob): Promise<void> {
    if (yieldsToSyncs(job)) {
      if (this.#backgroundRunning === 0 && this.#idle()) {
        this.#backgroundRunning++;
        return;
      }
    } else if (this.#running < this.#limit()) {
      this.#running++;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const grant = () => {
        job.signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        for (const queue of [this.#waiting, this.#urgentWaiting, this.#backgroundWaiting]) {
          const index = queue.indexOf(grant);
          if (index >= 0) queue.splice(index, 1);
        }
        reject(job.signal.reason as Error);
      };
      job.signal.addEventListener('abort', onAbort, { once: true });
      (yieldsToSyncs(job) ? this.#backgroundWaiting : job.urgent ? this.#urgentWaiting : this.#waiting).push(grant);
    });
  }

  /** Jobs parked for a slot (a preheat: for the node to be idle); none of them transfers until granted one. */
  get waiting(): number {
    return this.#waiting.length + this.#urgentWaiting.length + this.#backgroundWaiting.length;
  }

  #idle(): boolean {
    return this.#running === 0 && this.#waiting.length === 0 && this.#urgentWaiting.length === 0;
  }

  /** The job's attempt ended: its slot goes to the next waiter (urgent first), or a preheat when idle. */
  release(job: SyncJob): void {
    if (yieldsToSyncs(job)) {
      this.#backgroundRunning--;
    } else {
      // Hand the slot straight to the next waiter (urgent first) if the limit still allows it.
      const next = this.#running <= this.#limit() ? (this.#urgentWaiting.shift() ?? this.#waiting.shift()) : undefined;
      if (next) return next();
      this.#running--;
    }
    if (this.#backgroundRunning === 0 && this.#idle()) {
      const next = this.#backgroundWaiting.shift();
      if (next) {
        this.#backgroundRunning++;
        next();
      }
    }
  }
}
