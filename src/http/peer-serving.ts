/**
 * The seed's side of the site tier (sync/site-tier.ts is the asking side): what a sibling's
 * request carries, the bytes served to siblings (apart from tablets'), and the build-identity
 * route a sibling asks instead of probing the master itself.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isValidMeetingId } from '../meeting-id.ts';
import { within } from '../time-limit.ts';
import { isBuild, isBuildAskedFor, standsForBuild } from '../store/package-state.ts';
import type { PackageStore, StoredPackage } from '../store/package-store.ts';
import type { BuildAnswer } from '../sync/site-tier.ts';
import { BUILD_HEADER, NOT_BUILD_HEADER, PEER_HEADER, TOKEN_HEADER } from '../sync/site-tier.ts';
import type { Reconciler } from '../sync/reconciler.ts';
import { sendJson } from './send-json.ts';

export interface BuildIdentityDeps {
  store: Pick<PackageStore, 'get'>;
  sync: Pick<Reconciler, 'activeMeeting' | 'isServable' | 'refreshSoon' | 'lastSuccess' | 'probeForPeer'>;
  serving: () => boolean;
  retryAfterSeconds: number;
  /** How long the answer may wait for a probe of the master. */
  waitMs: number;
}

/** What a sibling node asked for; null for a tablet's request. */
export interface PeerRequest {
  /** The asking node's id. */
  node: string;
  /** The build it wants (buildId), if it knows it. */
  build: string | null;
  /** Its master token: without a build, it wants the package confirmed under this token. */
  token: string | null;
  /** Builds it must not get: what it held before a restart this node may not have seen. */
  notBuilds: string[];
}

export function peerRequest(req: IncomingMessage): PeerRequest | null {
  const node = header(req, PEER_HEADER);
  if (node === null) return null;
  const notBuilds = (header(req, NOT_BUILD_HEADER) ?? '').split(',').map((id) => id.trim()).filter((id) => id !== '').slice(0, 4);
  return { node: node.slice(0, 64), build: header(req, BUILD_HEADER), token: header(req, TOKEN_HEADER), notBuilds };
}

/** Whether the package held is the one the sibling asked for (without build or token: any). */
export function holdsWanted(held: StoredPackage, peer: PeerRequest): boolean {
  if (!isBuildAskedFor(held, peer)) return false;
  if (peer.build !== null) return true;
  if (peer.token !== null) return held.token === peer.token;
  return true;
}

/** Bytes and requests served to sibling nodes. */
export class PeerServeStats {
  bytes = 0;
  requests = 0;
  /** Answered 409: this node fetches that package from a sibling itself (no loops). */
  refused = 0;
  /** Answered 503: it was bringing its copy up to date for the build asked for. */
  busy = 0;
  #byMeeting = new Map<string, number>();

  served(meetingId: string, n: number): void {
    this.bytes += n;
    this.#byMeeting.set(meetingId, (this.#byMeeting.get(meetingId) ?? 0) + n);
  }

  bytesFor(meetingId: string): number {
    return this.#byMeeting.get(meetingId) ?? 0;
  }
}

/**
 * Bytes served to tablets: everything served but what went to sibling nodes (which the download
 * counters include). Status, /metrics and the panel's chart all read it here.
 */
export function bytesServedToTablets(stats: { totalBytesServed: number }, peers: Pick<PeerServeStats, 'bytes'>): number {
  return Math.max(0, stats.totalBytesServed - peers.bytes);
}

/**
 * GET /api/edge/v1/meetings/{id}/build?token=…: the identity of this node's package of a meeting
 * under the sibling's token. A package confirmed under that token answers from its manifest;
 * otherwise this node probes the master (one probe queue; a probe already waiting is joined) and
 * answers what it found, having acted on it (same build: retagged; new build: its fetch started).
 * 404: the meeting is not active here or nothing is held; 503 + Retry-After: no answer in time.
 */
export async function handleBuildIdentity(deps: BuildIdentityDeps, meetingId: string, url: string, res: ServerResponse): Promise<void> {
  if (!isValidMeetingId(meetingId)) return sendJson(res, 400, { error: 'invalid meeting id', field: 'id' });
  if (!deps.serving()) return sendJson(res, 503, { error: 'service stopped by the operator' }, { 'retry-after': String(deps.retryAfterSeconds) });
  const token = new URLSearchParams(url.slice(url.indexOf('?') + 1 || url.length)).get('token');
  if (!deps.sync.activeMeeting(meetingId)) {
    void deps.sync.refreshSoon().catch(() => {});
    return sendJson(res, 404, { error: `meeting ${meetingId} is not active on this node`, field: 'id' });
  }
  const held = deps.store.get(meetingId);
  if (!held || !deps.sync.isServable(meetingId)) return sendJson(res, 404, { error: `no package of meeting ${meetingId} held here`, field: 'id' });
  if (token !== null && held.token === token) return sendJson(res, 200, answer(held, standsForBuild(held), held.documentsId));
  // A token this node has not polled yet: look again soon, so its own probe runs under it too.
  if (token !== null && token !== deps.sync.lastSuccess?.token) void deps.sync.refreshSoon().catch(() => {});
  const result = await within(deps.sync.probeForPeer(meetingId), deps.waitMs, null);
  if (result === null || result.kind !== 'identified') {
    return sendJson(res, 503, { error: `the master's current build is not known yet${result ? `: ${result.reason}` : ''}` }, { 'retry-after': '1' });
  }
  const now = deps.store.get(meetingId);
  return sendJson(res, 200, answer(now && isBuild(now, result.identity.buildId) ? now : null, result.identity.buildId, result.identity.documentsId));
}

function answer(pkg: StoredPackage | null, buildId: string, documentsId: string | null): BuildAnswer {
  return { buildId, documentsId, sha256: pkg?.sha256 ?? null, size: pkg?.size ?? null, token: pkg?.token ?? null };
}

function header(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? null : text;
}
