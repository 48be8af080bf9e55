import type { ActiveMeeting } from '../master/master-client.ts';
import type { FetchReason } from './sync-jobs.ts';

/**
 * Reconciliation, Kubernetes-style: a pure function from (desired state = the master's active
 * meetings and token, actual state = packages held and jobs running, memory of earlier polls) to
 * the actions that close the gap. A thin loop (SyncLoop) executes them.
 *
 * Why the memory: the master's token changes late (after every node reports a new meeting synced)
 * and for any meeting's start, and a meeting can end and restart between two polls with new bytes.
 * A token change that a newly seen meeting explains needs no re-download of the others (we only
 * record the new token); an unexplained one means some meeting we thought unchanged restarted, so
 * every held package is fetched again and replaced only if its bytes differ.
 */

export interface HeldPackage {
  meetingId: string;
  token: string | null;
}

export interface ReconcileMemory {
  /** Active ids at the previous successful poll; null before the first one of this process. */
  previousActive: ReadonlySet<string> | null;
  previousToken: string | null;
  /** Ids that became active while previousToken was in force: they explain its next change. */
  appearedSinceToken: ReadonlySet<string>;
  /** Held packages whose meeting was seen to end (kept because cleanup is off): stale if it restarts. */
  endedHeld: ReadonlySet<string>;
}

export interface ReconcilePolicy {
  /** cleanup.enabled && cleanup.cleanEndedMeetings */
  evictEnded: boolean;
  /** cleanup.enabled && cleanup.cleanOnStartup */
  cleanOnStartup: boolean;
}

export interface ReconcileInput {
  now: number;
  /** The last successful poll. Reconcile never runs on a failed poll: a dead master evicts nothing. */
  poll: { token: string | null; meetings: readonly ActiveMeeting[] };
  held: readonly HeldPackage[];
  inFlight: ReadonlySet<string>;
  /** Meetings whose last job failed, with the earliest time to try again. */
  retryAt: ReadonlyMap<string, number>;
  memory: ReconcileMemory;
  policy: ReconcilePolicy;
}

export type SyncAction =
  | { type: 'fetch'; meetingId: string; title: string; reason: FetchReason }
  | { type: 'evict'; meetingId: string; reason: 'ended' | 'startup-cleanup' }
  | { type: 'cancel'; meetingId: string }
  | { type: 'retag'; meetingId: string; token: string | null };

export interface ReconcileResult {
  actions: SyncAction[];
  memory: ReconcileMemory;
}

export const initialMemory: ReconcileMemory = Object.freeze({
  previousActive: null,
  previousToken: null,
  appearedSinceToken: new Set<string>(),
  endedHeld: new Set<string>(),
});

export function reconcile(input: ReconcileInput): ReconcileResult {
  const { poll, memory, policy, inFlight, now } = input;
  const first = memory.previousActive === null;
  const active = new Map(poll.meetings.map((m) => [m.id, m]));
  const held = new Map(input.held.map((p) => [p.meetingId, p]));
  const tokenChanged = !first && poll.token !== memory.previousToken;
  const explained = tokenChanged && memory.appearedSinceToken.size > 0;
  const newlyActive = new Set([...active.keys()].filter((id) => !memory.previousActive?.has(id)));
  const endedHeld = new Set(memory.endedHeld);
  const actions: SyncAction[] = [];
  const waitingForRetry = (id: string) => (input.retryAt.get(id) ?? 0) > now;

  // Jobs for meetings that are no longer active: nobody should get those bytes.
  for (const id of inFlight) {
    if (!active.has(id)) actions.push({ type: 'cancel', meetingId: id });
  }

  for (const pkg of held.values()) {
    const id = pkg.meetingId;
    const meeting = active.get(id);
    if (!meeting) {
      // Later polls evict only meetings seen to end (active at the previous poll), as the
      // reference does: a package that was not active at start stays when cleanOnStartup is off.
      const mayEvict = first ? policy.cleanOnStartup : policy.evictEnded && memory.previousActive!.has(id);
      if (mayEvict) {
        actions.push({ type: 'evict', meetingId: id, reason: first ? 'startup-cleanup' : 'ended' });
        endedHeld.delete(id);
      } else if (!first && memory.previousActive!.has(id)) {
        endedHeld.add(id);
      }
      continue;
    }
    if (inFlight.has(id)) continue;
    const fetch = (reason: FetchReason) => {
      if (!waitingForRetry(id)) actions.push({ type: 'fetch', meetingId: id, title: meeting.title, reason });
    };
    if (endedHeld.has(id)) {
      fetch('restarted');
    } else if (tokenChanged) {
      if (explained) actions.push({ type: 'retag', meetingId: id, token: poll.token });
      else fetch('token-changed');
    } else if (pkg.token !== poll.token) {
      // First poll: the package predates this process and the token moved since (or it was
      // adopted from a reference node): fetch again, keep serving it until the bytes differ.
      // Later polls: it was fetched during this activation under an older token: record the new one.
      if (first) fetch('token-changed');
      else actions.push({ type: 'retag', meetingId: id, token: poll.token });
    }
  }

  for (const meeting of active.values()) {
    if (held.has(meeting.id) || inFlight.has(meeting.id) || waitingForRetry(meeting.id)) continue;
    actions.push({ type: 'fetch', meetingId: meeting.id, title: meeting.title, reason: input.retryAt.has(meeting.id) ? 'retry' : 'new' });
  }

  let appearedSinceToken: Set<string>;
  if (first) {
    // Meetings we fetch now may be what the next token change announces.
    appearedSinceToken = new Set([...active.keys()].filter((id) => held.get(id)?.token !== poll.token));
  } else if (tokenChanged) {
    appearedSinceToken = newlyActive;
  } else {
    appearedSinceToken = new Set([...memory.appearedSinceToken, ...newlyActive]);
  }

  return {
    actions,
    memory: { previousActive: new Set(active.keys()), previousToken: poll.token, appearedSinceToken, endedHeld },
  };
}
