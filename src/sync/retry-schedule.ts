import { SYNC_POLICY, type RetryPolicy } from '../policy.ts';

/**
 * base × 2^step (each step capped at policy.ts's backoffStepCapMs), with ±25 % jitter so nodes do
 * not retry in lockstep.
 */
export function backoffDelay(baseMs: number, step: number, random: number): number {
  const exponential = baseMs * 2 ** Math.max(0, step);
  return Math.round(Math.min(SYNC_POLICY.backoffStepCapMs, exponential) * (0.75 + random * 0.5));
}

/** One key's failures in a row and when it may be tried again. */
export interface RetryEntry {
  failures: number;
  /** Not to be tried again before this time. */
  at: number;
  /** The wait that set `at`. */
  delayMs: number;
}

/**
 * The retry bookkeeping of one kind of work (jobs, probes, preheats), per meeting: a failure count,
 * a capped exponential backoff with jitter, the next time to try. A success clears the meeting.
 */
export class RetrySchedule<Details extends object = object> {
  #entries = new Map<string, RetryEntry & Details>();
  #now: () => number;
  #random: () => number;

  constructor(options: { now?: () => number; random?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /**
   * What one more failure of `key` would make of it, without recording it. `skipSteps`: backoff
   * steps already waited elsewhere (a job's own attempts), so this wait starts past them.
   */
  next(key: string, policy: RetryPolicy, details: Details, skipSteps = 0): RetryEntry & Details {
    const failures = (this.#entries.get(key)?.failures ?? 0) + 1;
    const delayMs = Math.min(policy.maxDelayMs, backoffDelay(policy.firstDelayMs, failures - 1 + skipSteps, this.#random()));
    return { ...details, failures, at: this.#now() + delayMs, delayMs };
  }

  /** Records one more failure of `key` (see next()). */
  failed(key: string, policy: RetryPolicy, details: Details, skipSteps = 0): RetryEntry & Details {
    const entry = this.next(key, policy, details, skipSteps);
    this.#entries.set(key, entry);
    return entry;
  }

  /** `key` succeeded, or is forgotten: its next failure is the first again. */
  clear(key: string): void {
    this.#entries.delete(key);
  }

  get(key: string): (RetryEntry & Details) | undefined {
    return this.#entries.get(key);
  }

  /** Whether `key` must not be tried yet. */
  waiting(key: string): boolean {
    return (this.#entries.get(key)?.at ?? 0) > this.#now();
  }

  entries(): [string, RetryEntry & Details][] {
    return [...this.#entries];
  }
}
