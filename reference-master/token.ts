// The active-meetings token: it changes only when a meeting became active, and late: once every
// online node reported the meeting synced (checked on an interval) plus a settle time, or after a
// maximum wait.
import { randomUUID } from 'node:crypto';

export interface TokenTiming {
  checkIntervalMs: number;
  settleMs: number;
  maxWaitMs: number;
}

interface TokenWait {
  interval: NodeJS.Timeout;
  maxWait: NodeJS.Timeout;
  settle: NodeJS.Timeout | null;
}

export class TokenClock {
  readonly #timing: TokenTiming;
  readonly #allSynced: (meetingId: string) => boolean;
  readonly #onChange: () => void;
  readonly #waits = new Map<string, TokenWait>();
  #token = randomUUID();

  constructor(timing: TokenTiming, allSynced: (meetingId: string) => boolean, onChange: () => void) {
    this.#timing = timing;
    this.#allSynced = allSynced;
    this.#onChange = onChange;
  }

  current(): string {
    return this.#token;
  }

  /** The meeting became active: change the token once the nodes have it (or at the latest). */
  meetingActivated(meetingId: string): void {
    this.cancel(meetingId);
    const change = () => {
      this.cancel(meetingId);
      this.#token = randomUUID();
      this.#onChange();
    };
    const wait: TokenWait = {
      interval: setInterval(() => {
        if (wait.settle || !this.#allSynced(meetingId)) return;
        clearInterval(wait.interval);
        wait.settle = setTimeout(change, this.#timing.settleMs);
      }, this.#timing.checkIntervalMs),
      maxWait: setTimeout(change, this.#timing.maxWaitMs),
      settle: null,
    };
    this.#waits.set(meetingId, wait);
  }

  /** The meeting left 进行中 before the token changed for it: no change for it any more. */
  cancel(meetingId: string): void {
    const wait = this.#waits.get(meetingId);
    if (!wait) return;
    clearInterval(wait.interval);
    clearTimeout(wait.maxWait);
    if (wait.settle) clearTimeout(wait.settle);
    this.#waits.delete(meetingId);
  }

  stop(): void {
    for (const id of [...this.#waits.keys()]) this.cancel(id);
  }
}
