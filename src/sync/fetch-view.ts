/**
 * A package fetch (the node pulling from the master or a seed; what it gives out is "serve",
 * http/serve-stats.ts) as everyone but the sync sees it: read-only. The sync (SyncJobs) hands out
 * only this view; tablets served while it fetches, the download route, status, admin events,
 * metrics and the quota guard read a fetch through it and nothing else.
 */
import type { FetchedSource } from '../store/package-state.ts';
import type { StoredPackage } from '../store/package-store.ts';

/** 'preheat': a meeting not started yet (background priority; stored as not servable). */
export type FetchReason = 'new' | 'restarted' | 'token-changed' | 'retry' | 'requested' | 'preheat';

/**
 * A preheat: the package of a meeting not started yet. It waits until no other fetch runs or
 * waits, gives the master's stream back to any sync, is replaced by its meeting's sync, and its
 * failure is not the meeting's.
 */
export function yieldsToSyncs(fetch: { readonly reason?: FetchReason }): boolean {
  return fetch.reason === 'preheat';
}

/** Whether the fetch may evict other packages to fit: a preheat is refused instead, below the cleanup mark. */
export function evictsToFit(fetch: { readonly reason?: FetchReason }): boolean {
  return !yieldsToSyncs(fetch);
}

/** The origin a fetch's bytes are stored under: a preheat's are not servable until its start confirms them. */
export function storedSource(fetch: { readonly reason?: FetchReason }): FetchedSource {
  return yieldsToSyncs(fetch) ? 'preheat' : 'master';
}
/** Where a fetch's bytes come from: the master, or a sibling node of the site (its address). */
export type FetchSource = { readonly kind: 'master' } | { readonly kind: 'peer'; readonly node: string };
export type JobState = 'queued' | 'running' | 'backoff' | 'done' | 'failed';

export interface JobOutcome {
  pkg: StoredPackage;
  /** False when the fetched bytes equal the package already held (only the token was updated). */
  replaced: boolean;
}

/** What became of one attempt of a fetch: see FetchView.attemptStatus. */
export type AttemptStatus =
  /** The attempt is still the current one: `available` bytes of it are in its temp file. */
  | { readonly kind: 'running'; readonly available: number }
  /** The attempt's bytes became the package: `size` bytes in all. */
  | { readonly kind: 'succeeded'; readonly size: number }
  /** The fetch failed, or this attempt did and a later one writes another file. */
  | { readonly kind: 'failed'; readonly reason: string };

/**
 * Called synchronously by the fetch; must not throw. Every callback is optional.
 */
export interface FetchListener {
  /**
   * Bytes of attempt `attempt` just reached its temp file: `written`, ending at offset `total`.
   * Tablets caught up with the fetch write these buffers on instead of reading them back.
   */
  bytes?(attempt: number, total: number, written: readonly Buffer[]): void;
  /** A retry began: the attempt number is now `attempt`, and bytes of earlier attempts are void. */
  restarted?(attempt: number): void;
  /** The fetch ended: its outcome, or the error it failed with. */
  settled?(outcome: JobOutcome | Error): void;
}

export interface FetchView {
  readonly meetingId: string;
  readonly reason: FetchReason;
  /** Where the current attempt's bytes come from. */
  readonly source: FetchSource;
  /** Started for a sibling node (it fetches from the master, never from another sibling). */
  readonly forPeer: boolean;
  /** A tablet is waiting for it: it jumps the queue for a fetch slot. */
  readonly urgent: boolean;
  readonly state: JobState;
  /** The current attempt, from 1 (0 before the first). */
  readonly attempt: number;
  /** Bytes of the current attempt on disk. */
  readonly bytesWritten: number;
  /** Bytes per second over the current attempt. */
  readonly rate: number;
  /** Epoch ms the fetch was asked for. */
  readonly createdAt: number;
  /** Epoch ms the current attempt opened its temp file (0 before). */
  readonly attemptStartedAt: number;
  /** The temp file of the running attempt (readers may tail it); null between attempts. */
  readonly tempPath: string | null;
  /** Why it failed, once it has. */
  readonly error: string | null;
  /** What it stored, once it succeeded. */
  readonly outcome: JobOutcome | null;
  /** Settles with the fetch; rejects when it fails. */
  readonly done: Promise<JobOutcome>;
  /** Done or failed. */
  readonly settled: boolean;
  /**
   * The one answer to "is attempt `attempt` still the one whose bytes count?": running (with the
   * bytes of it available), succeeded (its bytes are the package), or failed (the fetch did,
   * or a retry replaced it).
   */
  attemptStatus(attempt: number): AttemptStatus;
  /** Calls `listener` as the fetch progresses until the returned function is called. */
  subscribe(listener: FetchListener): () => void;
}
