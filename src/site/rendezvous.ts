/**
 * Which node of the site fetches a meeting's package from the master (its seed): rendezvous
 * (highest-random-weight) hashing, the scheme of Squid's CARP and Varnish's shard director. Every
 * node computes the same answer from the same membership without talking to the others, and a node
 * joining or leaving moves only the meetings it wins or held, not everyone's.
 */
import { createHash } from 'node:crypto';

/** The weight of one member for one meeting: the first 48 bits of sha256(meetingId NUL member). */
export function rendezvousWeight(meetingId: string, member: string): number {
  return createHash('sha256').update(meetingId).update('\0').update(member).digest().readUIntBE(0, 6);
}

/**
 * The members ordered by weight for this meeting, highest first: the seed, then who takes over if
 * it fails. Ties (vanishingly rare) fall back to the member's name, so the order is total.
 */
export function rendezvousOrder(meetingId: string, members: Iterable<string>): string[] {
  const weighted = [...new Set(members)].map((member) => ({ member, weight: rendezvousWeight(meetingId, member) }));
  weighted.sort((a, b) => b.weight - a.weight || (a.member < b.member ? -1 : a.member > b.member ? 1 : 0));
  return weighted.map((w) => w.member);
}

/** The seed of a meeting among these members; null when there are none. */
export function pickSeed(meetingId: string, members: Iterable<string>): string | null {
  return rendezvousOrder(meetingId, members)[0] ?? null;
}
