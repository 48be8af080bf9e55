// One token bucket shared by every package body: the real master's package stream is CPU-bound, so
// downloads at the same time split one rate instead of each getting it.

export class SharedRate {
  readonly #bytesPerSec: number;
  readonly #now: () => number;
  /** When (ms, on #now's clock) the bytes reserved so far have all been paid for. */
  #paidUntil = -Infinity;

  constructor(bytesPerSec: number, now: () => number = () => performance.now()) {
    if (!(bytesPerSec > 0)) throw new Error('rate must be positive');
    this.#bytesPerSec = bytesPerSec;
    this.#now = now;
  }

  /**
   * Reserves `bytes`; returns how many ms the caller waits before sending them: until the bytes
   * reserved before are paid for. Idle time earns no credit, so the rate holds over any window.
   */
  reserve(bytes: number): number {
    const now = this.#now();
    const start = Math.max(this.#paidUntil, now);
    this.#paidUntil = start + (bytes / this.#bytesPerSec) * 1000;
    return start - now;
  }
}
