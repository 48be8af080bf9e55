import type { EventEmitter } from 'node:events';
import type { StoreEvent } from '../../store/package-store.ts';
import type { ServeStats, FinishedServe } from '../serve-stats.ts';

/** Addresses remembered per meeting at most: a bound on memory whatever the clients do. */
const MAX_HOLDERS_PER_MEETING = 10_000;

/**
 * How many tablets hold each meeting's package: the distinct addresses that downloaded it to its
 * last byte (a whole 200, or a 206 of an open-ended range `bytes=N-`, a resumed download), sibling
 * nodes not counted. A new build promoted, or the package removed, starts the count again: those
 * tablets hold an older build. Fed by the access log's `finished` event (once per download, never
 * per byte). Tablets behind one NAT address count once.
 */
export class PackageHolders {
  #byMeeting = new Map<string, Set<string>>();
  #off: () => void;

  constructor(stats: Pick<ServeStats, 'events'>, store: { events: EventEmitter<{ change: [StoreEvent] }> }) {
    const onFinished = (d: FinishedServe) => this.#finished(d);
    const onChange = (event: StoreEvent) => {
      if (event.type === 'removed' || (event.type === 'promoted' && event.replaced)) this.#byMeeting.delete(event.meetingId);
    };
    stats.events.on('finished', onFinished);
    store.events.on('change', onChange);
    this.#off = () => {
      stats.events.off('finished', onFinished);
      store.events.off('change', onChange);
    };
  }

  /** Meeting id → tablets holding its package, for the meetings any tablet holds. */
  counts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const [id, holders] of this.#byMeeting) counts[id] = holders.size;
    return counts;
  }

  close(): void {
    this.#off();
  }

  #finished(d: FinishedServe): void {
    if (!d.completed || d.peer || d.client === null) return;
    const toTheEnd = d.status === 200 || (d.status === 206 && typeof d.range === 'string' && /^bytes=\d+-$/.test(d.range.trim()));
    if (!toTheEnd) return;
    let holders = this.#byMeeting.get(d.meetingId);
    if (!holders) {
      holders = new Set();
      this.#byMeeting.set(d.meetingId, holders);
    }
    if (holders.size < MAX_HOLDERS_PER_MEETING) holders.add(d.client);
  }
}
