/** Per-meeting serving figures, kept in memory for status, metrics and least-recently-served eviction. */
export interface MeetingServeStats {
  downloadsStarted: number;
  downloadsCompleted: number;
  downloadsAborted: number;
  bytesServed: number;
  activeDownloads: number;
  lastServedAt: number | null;
}

export class DownloadStats {
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

  finished(meetingId: string, completed: boolean): void {
    const stats = this.get(meetingId);
    stats.activeDownloads--;
    this.activeDownloads--;
    stats.lastServedAt = this.#now();
    if (completed) stats.downloadsCompleted++;
    else stats.downloadsAborted++;
  }
}
