/**
 * A sibling's watch on its seed during a download (issue 18): a seed is dead when it does not
 * answer, not when it is slow. When no byte came for the stall window, the seed's health is asked
 * at once; an answer (a live seed waiting on a slow master) is waited on, and the watch re-arms;
 * no answer within the probe's timeout marks the seed sick and aborts the download.
 */
import type { SiteHealth } from './health.ts';

/** Watches one download from a seed. */
export interface SeedWatch {
  /** Aborted (with the error `dead` makes) when the seed is found dead. */
  readonly signal: AbortSignal;
  /** Bytes arrived. */
  progressed(): void;
  stop(): void;
}

export function watchSeed(health: Pick<SiteHealth, 'probe' | 'markSick'>, seed: string, stallMs: number, dead: (message: string) => Error): SeedWatch {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = () => {
    clearTimeout(timer);
    if (stopped) return;
    timer = setTimeout(() => {
      void health.probe(seed).then((alive) => {
        if (stopped) return;
        if (alive) return arm();
        const reason = `no byte for ${Math.round(stallMs / 1000)} s and no answer to its health probe`;
        health.markSick(seed, reason);
        controller.abort(dead(`seed ${seed}: ${reason}`));
      });
    }, stallMs);
  };
  arm();
  return {
    signal: controller.signal,
    progressed: arm,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
