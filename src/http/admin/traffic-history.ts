import { EventEmitter } from 'node:events';

/** Byte counters as they stand (totals since start); the history turns them into rates. */
export interface TrafficTotals {
  servedTablets: number;
  servedPeers: number;
  fetchedMaster: number;
}

/** One sample as the API and the event stream send it: bytes per second over the interval before `at`. */
export interface TrafficSample {
  at: number;
  served_tablets: number;
  served_peers: number;
  fetched_master: number;
  /** Meeting id → tablets holding its package at `at`. */
  holders: Record<string, number>;
}

export interface TrafficHistoryDeps {
  totals: () => TrafficTotals;
  holders: () => Record<string, number>;
  intervalMs: number;
  /** Samples kept: intervalMs × samples is the window the panel's chart shows. */
  samples: number;
  now?: () => number;
}

/**
 * The panel's live chart: every intervalMs, the byte counters the node keeps anyway (served to
 * tablets, to siblings, fetched from the master) are read once and turned into rates, with the
 * holders per meeting, in a fixed ring (5 s × 180 = 15 min). Nothing runs per request: the
 * counters are the ones /metrics reads.
 */
export class TrafficHistory {
  readonly events = new EventEmitter<{ sample: [TrafficSample] }>();
  readonly #deps: Required<TrafficHistoryDeps>;
  readonly #ring: Array<TrafficSample | undefined>;
  #next = 0;
  #count = 0;
  #last: { at: number; totals: TrafficTotals } | null = null;
  #timer: NodeJS.Timeout | null = null;

  constructor(deps: TrafficHistoryDeps) {
    this.#deps = { now: Date.now, ...deps };
    this.#ring = new Array<TrafficSample | undefined>(deps.samples);
  }

  get intervalMs(): number {
    return this.#deps.intervalMs;
  }

  start(): void {
    if (this.#timer) return;
    this.#last = { at: this.#deps.now(), totals: this.#deps.totals() };
    this.#timer = setInterval(() => this.sample(), this.#deps.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Takes a sample now (the timer's job; tests call it directly). */
  sample(): TrafficSample {
    const at = this.#deps.now();
    const totals = this.#deps.totals();
    const last = this.#last ?? { at: at - this.#deps.intervalMs, totals };
    const seconds = Math.max(0.001, (at - last.at) / 1000);
    const rate = (key: keyof TrafficTotals) => Math.max(0, Math.round((totals[key] - last.totals[key]) / seconds));
    const sample: TrafficSample = {
      at,
      served_tablets: rate('servedTablets'),
      served_peers: rate('servedPeers'),
      fetched_master: rate('fetchedMaster'),
      holders: this.#deps.holders(),
    };
    this.#last = { at, totals };
    this.#ring[this.#next] = sample;
    this.#next = (this.#next + 1) % this.#ring.length;
    this.#count = Math.min(this.#count + 1, this.#ring.length);
    this.events.emit('sample', sample);
    return sample;
  }

  /** The samples kept, oldest first. */
  samples(): TrafficSample[] {
    const size = this.#ring.length;
    const out: TrafficSample[] = [];
    for (let i = 0; i < this.#count; i++) out.push(this.#ring[(this.#next - this.#count + i + size) % size]!);
    return out;
  }
}
