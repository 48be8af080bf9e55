import type { AttemptStatus, FetchListener, FetchView, FetchReason, FetchSource, JobOutcome, JobState } from './fetch-view.ts';
import { FetchError } from './fetch-package.ts';
import type { ResumePoint } from '../site/site-tier.ts';

/** The master as a download's source (the default, and every source after a sibling failed). */
export const MASTER: FetchSource = Object.freeze({ kind: 'master' });

export interface JobRequest {
  meetingId: string;
  title: string;
  /** The master's token when the job was asked for; recorded in the manifest. */
  token: string | null;
  reason: FetchReason;
  /** A tablet is waiting: jump the queue of jobs waiting for a download slot. */
  urgent?: boolean;
  /** Asked for by a sibling node: fetched from the master, never from a sibling (no loops). */
  forPeer?: boolean;
  /** The build (zip-lead.ts buildId) a probe found current: a sibling's bytes must be it... */
  build?: string | null;
  /** ...or carry its documents (documentsId): a seed's confirmed preheat stands for that build. */
  documents?: string | null;
  /**
   * Builds a sibling's bytes must not be: the ones held when the meeting was seen to end and start
   * again (a seed that missed the restart still holds them under the current token).
   */
  notBuilds?: readonly string[];
}

/**
 * A temp file kept from a failed attempt, with where the next attempt may go on from. It is the
 * job's own: never in the FetchView (nothing may read or serve it), used or discarded by the next
 * attempt, discarded when the job ends; a restart removes it with every other temp file.
 */
export interface KeptDownload {
  tempPath: string;
  resume: ResumePoint;
}

/**
 * One download of one meeting's package, shared by everyone who needs it. Its state changes only
 * through its own methods, called by SyncJobs (and by tests driving a download); everyone else
 * holds it as a FetchView.
 */
export class SyncJob implements FetchView {
  readonly meetingId: string;
  readonly title: string;
  readonly reason: FetchReason;
  /** The master's token when the job was asked for; recorded in the manifest. */
  readonly token: string | null;
  readonly forPeer: boolean;
  readonly build: string | null;
  readonly documents: string | null;
  readonly notBuilds: readonly string[];
  readonly createdAt: number;
  readonly done: Promise<JobOutcome>;
  #urgent: boolean;
  #source: FetchSource = MASTER;
  /** A sibling failed this download: the attempts left go to the master. */
  #peerFailed = false;
  #state: JobState = 'queued';
  #attempt = 0;
  #bytesWritten = 0;
  #rate = 0;
  #attemptStartedAt = 0;
  #tempPath: string | null = null;
  #kept: KeptDownload | null = null;
  #error: string | null = null;
  #outcome: JobOutcome | null = null;
  #controller = new AbortController();
  #resolve!: (outcome: JobOutcome) => void;
  #reject!: (error: Error) => void;
  #listeners = new Set<FetchListener>();
  /** #listeners as an array, rebuilt when membership changes: notifying allocates nothing. */
  #notified: readonly FetchListener[] = [];

  constructor(request: JobRequest, now: number) {
    this.meetingId = request.meetingId;
    this.title = request.title;
    this.token = request.token;
    this.reason = request.reason;
    this.forPeer = request.forPeer ?? false;
    this.build = request.build ?? null;
    this.documents = request.documents ?? null;
    this.notBuilds = request.notBuilds ?? [];
    this.#urgent = request.urgent ?? false;
    this.createdAt = now;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Nobody may be waiting on a failed background job; the failure is recorded elsewhere.
    this.done.catch(() => {});
  }

  get urgent(): boolean {
    return this.#urgent;
  }
  get source(): FetchSource {
    return this.#source;
  }
  get peerFailed(): boolean {
    return this.#peerFailed;
  }
  get state(): JobState {
    return this.#state;
  }
  get attempt(): number {
    return this.#attempt;
  }
  get bytesWritten(): number {
    return this.#bytesWritten;
  }
  get rate(): number {
    return this.#rate;
  }
  get attemptStartedAt(): number {
    return this.#attemptStartedAt;
  }
  get tempPath(): string | null {
    return this.#tempPath;
  }
  get error(): string | null {
    return this.#error;
  }
  get outcome(): JobOutcome | null {
    return this.#outcome;
  }
  get settled(): boolean {
    return this.#state === 'done' || this.#state === 'failed';
  }
  /** Aborted when the job is cancelled. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  attemptStatus(attempt: number): AttemptStatus {
    if (this.settled) {
      if (this.#outcome && this.#attempt === attempt) return { kind: 'succeeded', size: this.#outcome.pkg.size };
      return { kind: 'failed', reason: this.#error ?? 'the download failed' };
    }
    if (this.#attempt !== attempt) return { kind: 'failed', reason: `download attempt ${attempt} failed; attempt ${this.#attempt} starts over` };
    // Between the end of the attempt and the job settling there is nothing new to read.
    return { kind: 'running', available: this.#tempPath === null ? 0 : this.#bytesWritten };
  }

  subscribe(listener: FetchListener): () => void {
    this.#listeners.add(listener);
    this.#notified = [...this.#listeners];
    return () => {
      if (this.#listeners.delete(listener)) this.#notified = [...this.#listeners];
    };
  }

  /** A tablet is waiting now. */
  markUrgent(): void {
    this.#urgent = true;
  }

  /** The next attempt begins (waiting out its backoff first, after the first). */
  beginAttempt(): number {
    this.#attempt += 1;
    this.#state = this.#attempt > 1 ? 'backoff' : 'queued';
    if (this.#attempt > 1) {
      const attempt = this.#attempt;
      const listeners = this.#notified;
      for (let i = 0; i < listeners.length; i++) listeners[i]!.restarted?.(attempt);
    }
    return this.#attempt;
  }

  /** The next attempt fetches from `source`. */
  fetchFrom(source: FetchSource): void {
    this.#source = source;
  }

  /** The sibling this download came from failed it: no more attempts from siblings. */
  markPeerFailed(): void {
    this.#peerFailed = true;
  }

  /** The attempt waits for a download slot. */
  queued(): void {
    this.#state = 'queued';
  }

  /** The attempt writes `tempPath` from now on. */
  running(tempPath: string, now: number): void {
    this.#state = 'running';
    this.#bytesWritten = 0;
    this.#rate = 0;
    this.#attemptStartedAt = now;
    this.#tempPath = tempPath;
  }

  /** `written` just reached the temp file, ending at offset `total`. */
  wrote(total: number, written: readonly Buffer[], now: number): void {
    this.#bytesWritten = total;
    const elapsed = (now - this.#attemptStartedAt) / 1000;
    this.#rate = elapsed > 0 ? total / elapsed : 0;
    const attempt = this.#attempt;
    const listeners = this.#notified;
    for (let i = 0; i < listeners.length; i++) listeners[i]!.bytes?.(attempt, total, written);
  }

  /** The attempt's temp file was promoted, discarded or kept: nothing more to read from it. */
  endAttempt(): void {
    this.#tempPath = null;
  }

  /** The failed attempt's temp file is kept for the next one (see KeptDownload). */
  keep(kept: KeptDownload): void {
    this.#kept = kept;
  }

  /** The kept temp file, handed over once (to the next attempt, or to be discarded); null when none. */
  takeKept(): KeptDownload | null {
    const kept = this.#kept;
    this.#kept = null;
    return kept;
  }

  cancel(reason: string): void {
    if (!this.settled) this.#controller.abort(new FetchError(`cancelled: ${reason}`, 'CANCELLED', false));
  }

  settle(outcome: JobOutcome | Error): void {
    if (outcome instanceof Error) {
      this.#state = 'failed';
      this.#error = outcome.message;
      this.#reject(outcome);
    } else {
      this.#state = 'done';
      this.#outcome = outcome;
      this.#resolve(outcome);
    }
    const listeners = this.#notified;
    for (let i = 0; i < listeners.length; i++) listeners[i]!.settled?.(outcome);
  }
}
