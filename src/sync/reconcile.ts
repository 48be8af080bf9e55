import type { NodeConfig } from '../config/schema.ts';
import type { ActiveMeeting } from '../master/master-client.ts';
import type { FetchReason } from './fetch-view.ts';

/**
 * Reconciliation, Kubernetes-style: a pure function from (desired state = the master's active
 * meetings and token, actual state = packages held and jobs running, memory of earlier polls) to
 * the actions that close the gap. The Reconciler executes them.
 *
 * When to fetch again: the master rebuilds a package (new bytes) when its meeting ends and starts
 * again, and the only trace a node may see of a restart between two polls is the token change
 * (which comes late, once every node reports the meeting synced). No token change can be proven
 * harmless from the node's side — a meeting restarted before its first token change "explains"
 * the change itself — so every held package whose token differs from the master's is checked
 * again: by a probe of the master's current build (the leading bytes of its stream, build-probe.ts),
 * never by downloading it again; only a different build is fetched. A package records the token
 * of the poll that started its download, so a download that overlapped a change is checked once
 * more too. A meeting seen to end and start again has a new build for sure: fetched at once.
 */

export interface HeldPackage {
  meetingId: string;
  token: string | null;
  /** Fetched before its meeting started and not confirmed since (not servable). */
  preheated?: boolean;
}

export interface ReconcileMemory {
  /** Active ids at the previous successful poll; null before the first one of this process. */
  previousActive: ReadonlySet<string> | null;
  /** Held packages whose meeting was seen to end (kept because cleanup is off): stale if it restarts. */
  endedHeld: ReadonlySet<string>;
}

export interface ReconcilePolicy {
  /** cleanup.enabled && cleanup.cleanEndedMeetings */
  evictEnded: boolean;
  /** cleanup.enabled && cleanup.cleanOnStartup */
  cleanOnStartup: boolean;
}

/** What reconcile may evict, from the node's config (cleanup.*). */
export function reconcilePolicy(config: NodeConfig): ReconcilePolicy {
  const { cleanup } = config;
  return { evictEnded: cleanup.enabled && cleanup.cleanEndedMeetings, cleanOnStartup: cleanup.enabled && cleanup.cleanOnStartup };
}

export interface ReconcileInput {
  now: number;
  /** The last successful poll. Reconcile never runs on a failed poll: a dead master evicts nothing. */
  poll: { token: string | null; meetings: readonly ActiveMeeting[] };
  held: readonly HeldPackage[];
  inFlight: ReadonlySet<string>;
  /** Of those, the preheats (downloads of meetings not started). */
  preheating?: ReadonlySet<string>;
  /** Meetings with a probe of the master's build running or queued. */
  probing: ReadonlySet<string>;
  /** Meetings whose last job (or probe) failed, with the earliest time to try again. */
  retryAt: ReadonlyMap<string, number>;
  memory: ReconcileMemory;
  policy: ReconcilePolicy;
}

export type SyncAction =
  | { type: 'fetch'; meetingId: string; title: string; reason: FetchReason }
  /** Is the held package still the master's current build? Fetch only if not. */
  | { type: 'probe'; meetingId: string; title: string }
  /** A preheated package's meeting started: same documents as the master's new build? Serve it; else fetch. */
  | { type: 'confirm'; meetingId: string; title: string }
  | { type: 'evict'; meetingId: string; reason: 'ended' | 'startup-cleanup' }
  | { type: 'cancel'; meetingId: string };

export interface ReconcileResult {
  actions: SyncAction[];
  memory: ReconcileMemory;
}

export const initialMemory: ReconcileMemory = Object.freeze({
  previousActive: null,
  endedHeld: new Set<string>(),
});

export function reconcile(input: ReconcileInput): ReconcileResult {
  const { poll, memory, policy, inFlight, now } = input;
  const first = memory.previousActive === null;
  const active = new Map(poll.meetings.map((m) => [m.id, m]));
  const held = new Map(input.held.map((p) => [p.meetingId, p]));
  const endedHeld = new Set(memory.endedHeld);
  const actions: SyncAction[] = [];
  const waitingForRetry = (id: string) => (input.retryAt.get(id) ?? 0) > now;

  const preheating = input.preheating ?? new Set<string>();
  // Jobs for meetings that are no longer active: nobody should get those bytes. Preheats are for
  // meetings not active yet: the preheater owns them.
  for (const id of inFlight) {
    if (preheating.has(id)) {
      const meeting = active.get(id);
      // Started while preheating: the preheat (the not-started build) gives way to a clean sync.
      if (meeting && !waitingForRetry(id)) actions.push({ type: 'fetch', meetingId: id, title: meeting.title, reason: 'new' });
      continue;
    }
    if (!active.has(id)) actions.push({ type: 'cancel', meetingId: id });
  }

  for (const pkg of held.values()) {
    const id = pkg.meetingId;
    const meeting = active.get(id);
    if (pkg.preheated) {
      // Never active, so never "ended" or a start-up leftover: the preheater removes it when its
      // meeting goes away. Once started, it is served only after the start confirms it.
      if (meeting && !inFlight.has(id) && !input.probing.has(id) && !waitingForRetry(id)) {
        actions.push({ type: 'confirm', meetingId: id, title: meeting.title });
      }
      continue;
    }
    if (!meeting) {
      // Later polls evict only meetings seen to end (active at the previous poll), as the
      // reference does: a package that was not active at start stays when cleanOnStartup is off.
      const mayEvict = first ? policy.cleanOnStartup : policy.evictEnded && memory.previousActive!.has(id);
      if (mayEvict) {
        actions.push({ type: 'evict', meetingId: id, reason: first ? 'startup-cleanup' : 'ended' });
        endedHeld.delete(id);
      } else {
        // Kept while its meeting is not active (seen to end, or not active at start-up): the
        // master rebuilds a package at every start, so if the meeting becomes active again these
        // bytes are an earlier activation's, neither served nor reported until fetched again,
        // even while the master's token has not moved yet.
        endedHeld.add(id);
      }
      continue;
    }
    if (inFlight.has(id) || input.probing.has(id) || waitingForRetry(id)) continue;
    if (endedHeld.has(id)) {
      actions.push({ type: 'fetch', meetingId: id, title: meeting.title, reason: 'restarted' });
    } else if (pkg.token !== poll.token) {
      // The token moved since these bytes were fetched (or the package was adopted from a
      // reference node, token null): some meeting may have restarted. Keep serving the package
      // meanwhile; a probe tells whether the master's build is still this one.
      actions.push({ type: 'probe', meetingId: id, title: meeting.title });
    }
  }

  for (const meeting of active.values()) {
    if (held.has(meeting.id) || inFlight.has(meeting.id) || waitingForRetry(meeting.id)) continue;
    actions.push({ type: 'fetch', meetingId: meeting.id, title: meeting.title, reason: input.retryAt.has(meeting.id) ? 'retry' : 'new' });
  }

  return {
    actions,
    memory: { previousActive: new Set(active.keys()), endedHeld },
  };
}
