import { EventEmitter } from 'node:events';

/** Per-meeting serving figures, kept in memory for status, metrics and least-recently-served eviction. */
export interface MeetingServeStats {
  downloadsStarted: number;
  downloadsCompleted: number;
  downloadsAborted: number;
  bytesServed: number;
  activeDownloads: number;
  lastServedAt: number | null;
}

/** How one tablet download went, as the access log writes it. */
export interface ServeRecord {
  /** The tablet's address (null when the socket was already gone). */
  client: string | null;
  /** HTTP status sent. */
  status: number;
  /** Body bytes handed to the tablet. */
  bytes: number;
  durationMs: number;
  /** Streamed from a package still syncing. */
  whileSyncing: boolean;
  /** A sibling node's id when a node of the site asked (X-Edge-Peer), not a tablet. */
  peer?: string | null;
  /** The request's method, Range and User-Agent as sent (the fields grepped in nginx's combined log). */
  method?: string;
  range?: string | null;
  userAgent?: string | null;
}

export interface FinishedServe extends ServeRecord {
  meetingId: string;
  /** False: aborted (client gone, idle timeout, read error). */
  completed: boolean;
}

/** What the node serves: tablets (and siblings) downloading packages from it; "fetch" is the other direction. */
export class ServeStats {
  /**
   * One `finished` per download that ended with a record (the access log listens); one `request`
   * per request for a package, downloads, HEADs and revalidations alike (start.ts listens once).
   */
  readonly events = new EventEmitter<{ finished: [FinishedServe]; request: [] }>();
  #byMeeting = new Map<string, MeetingServeStats>();
  #now: () => number;
  totalBytesServed = 0;
  activeDownloads = 0;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  get(meetingId: string): MeetingServeStats {
    let stats = this.#byMeeting.get(meetingId);
    if (!stats) {
      stats = { downloadsStarted: 0, downloadsCompleted: 0, downloadsAborted: 0, bytesServed: 0, activeDownloads: 0, lastServedAt: null };
      this.#byMeeting.set(meetingId, stats);
    }
    return stats;
  }

  peek(meetingId: string): MeetingServeStats | undefined {
    return this.#byMeeting.get(meetingId);
  }

  /** A request for a package came in (before it is known what it gets). */
  requested(): void {
    this.events.emit('request');
  }

  started(meetingId: string): void {
    const stats = this.get(meetingId);
    stats.downloadsStarted++;
    stats.activeDownloads++;
    stats.lastServedAt = this.#now();
    this.activeDownloads++;
  }

  bytes(meetingId: string, n: number): void {
    this.get(meetingId).bytesServed += n;
    this.totalBytesServed += n;
  }

  finished(meetingId: string, completed: boolean, record?: ServeRecord): void {
    if (record) this.events.emit('finished', { meetingId, completed, ...record });
    const stats = this.get(meetingId);
    stats.activeDownloads--;
    this.activeDownloads--;
    stats.lastServedAt = this.#now();
    if (completed) stats.downloadsCompleted++;
    else stats.downloadsAborted++;
  }
}
