import type { ScheduledMeeting } from '../master/master-client.ts';

/**
 * Which packages to fetch ahead of their meeting's start, as a pure function of the master's
 * meeting list, the clock and what is held: the Preheater (preheat.ts) executes the plan.
 */

export interface PreheatWindow {
  /** Meetings scheduled up to this many hours from now. */
  hoursAhead: number;
  /** ...and up to this many hours ago (late starts are common). */
  hoursBehind: number;
}

export interface PreheatCandidate {
  id: string;
  title: string;
  /** The master's scheduled time as it gave it. */
  time: string;
  /** That time read in the node's local time zone (epoch ms). */
  timeMs: number;
}

/**
 * The master's `YYYY-MM-DDTHH:MM[:SS]` is its local time without a zone: read in the node's local
 * time zone (a node runs beside its master, in the same place). null when not such a time.
 */
export function parseMasterTime(time: string): number | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(time);
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1).map((part) => Number(part ?? 0)) as number[];
  const date = new Date(year!, month! - 1, day!, hour!, minute!, second!);
  // Reject rollovers (2026-02-31 → March): the master sent something that is not a date.
  if (date.getFullYear() !== year || date.getMonth() !== month! - 1 || date.getDate() !== day || date.getHours() !== hour || date.getMinutes() !== minute) {
    return null;
  }
  return date.getTime();
}

/**
 * Meetings not started whose scheduled time lies in [now - hoursBehind, now + hoursAhead] (both
 * edges included), soonest first (ties by id): the order they are preheated in.
 */
export function preheatCandidates(meetings: readonly ScheduledMeeting[], now: number, window: PreheatWindow): PreheatCandidate[] {
  const from = now - window.hoursBehind * 3_600_000;
  const to = now + window.hoursAhead * 3_600_000;
  const candidates: PreheatCandidate[] = [];
  for (const meeting of meetings) {
    if (meeting.status !== 'not-started' || meeting.time === null) continue;
    const timeMs = parseMasterTime(meeting.time);
    if (timeMs === null || timeMs < from || timeMs > to) continue;
    candidates.push({ id: meeting.id, title: meeting.title, time: meeting.time, timeMs });
  }
  return candidates.sort((a, b) => a.timeMs - b.timeMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export interface PreheatState {
  candidates: readonly PreheatCandidate[];
  /** Meetings the master lists as active now (their packages are the sync's). */
  active: ReadonlySet<string>;
  /** Held packages that are unconfirmed preheats. */
  preheated: ReadonlySet<string>;
  /** Meetings with a package held of any kind. */
  held: ReadonlySet<string>;
  /** Meetings with a download in flight: preheats, and the rest. */
  preheating: ReadonlySet<string>;
  inFlight: ReadonlySet<string>;
  /** Meetings whose last preheat failed, with when to try again. */
  retryAt: ReadonlyMap<string, number>;
  now: number;
}

export interface PreheatPlan {
  /** Preheated packages whose meeting was deleted, ended, or moved out of the window. */
  remove: string[];
  /** Preheats in flight for such meetings. */
  cancel: string[];
  /** The next meeting to preheat, if any may start now (one at a time, only when nothing else syncs). */
  next: PreheatCandidate | null;
}

export function planPreheat(state: PreheatState): PreheatPlan {
  const wanted = new Set(state.candidates.map((c) => c.id));
  const remove = [...state.preheated].filter((id) => !wanted.has(id) && !state.active.has(id)).sort();
  const cancel = [...state.preheating].filter((id) => !wanted.has(id) && !state.active.has(id)).sort();
  let next: PreheatCandidate | null = null;
  // Lowest priority: nothing else downloading (no sync, hence no tablet served from one).
  if (state.inFlight.size === 0) {
    next = state.candidates.find((c) => !state.held.has(c.id) && (state.retryAt.get(c.id) ?? 0) <= state.now) ?? null;
  }
  return { remove, cancel, next };
}
