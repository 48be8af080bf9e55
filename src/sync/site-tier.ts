/**
 * The site tier (issue 12): nodes that share a master fetch each package from the master once per
 * site. For each meeting every node picks the same seed by rendezvous hashing over the site's
 * members (rendezvous.ts, site-members.ts); the seed fetches from the master, every other node
 * fetches from the seed's own download URL (which streams a package while it is still arriving),
 * and only the seed probes the master for the current build: its siblings ask it.
 *
 * This is the asking side: which node is the seed, the request to it, the checks before a
 * sibling's bytes may be promoted, and the counters an operator reads. The serving side is the
 * download route (http/download-route.ts), which reads the headers below.
 *
 * A sibling is trusted only as far as it can be checked: the bytes must be a complete zip whose
 * sha256 equals the seed's ETag for its complete package, and the build the node asked for. Any
 * failure sends the download to the master (never both at once for one package).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.ts';
import { readBoundedText, type PackageResponse } from '../master/master-client.ts';
import { packageGet, type PackageGetResponse } from '../master/package-get.ts';
import { isAnyBuild, isBuild } from '../store/package-state.ts';
import { fileIdentity } from '../store/zip-lead.ts';
import type { ProbeResult } from './build-probe.ts';
import { FetchError, type FetchedPackage } from './fetch-package.ts';
import { pickSeed } from './rendezvous.ts';
import type { SiteMembers } from './site-members.ts';

/** Sent by a node fetching from its seed: its node id. The seed never fetches from a peer for it. */
export const PEER_HEADER = 'x-edge-peer';
/** The build (buildId, zip-lead.ts) the asking node wants; the seed serves no other. */
export const BUILD_HEADER = 'x-edge-build';
/** The asking node's master token: without a build, the seed serves a package confirmed under it. */
export const TOKEN_HEADER = 'x-edge-token';
/** Builds the asking node must not get (comma-separated): what it held before a restart it saw. */
export const NOT_BUILD_HEADER = 'x-edge-not-build';
/**
 * On a seed's answer: the master's build its package stands for when the bytes are of another
 * build with the same documents (a preheat confirmed at the start). Without it, a sibling accepts
 * only the very build it asked for: never an older build, even one with the same documents.
 */
export const STANDS_FOR_HEADER = 'x-edge-stands-for';
/** Trailer of a seed's streamed answer to a sibling: the sha256 (hex) of the package it ended with. */
export const SHA256_TRAILER = 'x-edge-sha256';

export type { FetchSource } from './fetch-view.ts';

export interface PeerSettings {
  /** peers.enabled: false turns the tier off (every fetch and probe goes to the master). */
  enabled: boolean;
  /** peers.connectTimeout: a seed that does not accept within this long has failed. */
  connectTimeoutMs: number;
}

export interface SiteTierDeps {
  members: SiteMembers;
  /** This node's registered address (host:port): its name among the members. */
  self: () => string;
  nodeId: () => string;
  settings: () => PeerSettings;
  logger: Logger;
  /** How fresh the membership must be when a seed is picked (the nodes must agree). */
  membersMaxAgeMs?: number;
  /** How long a seed answering 404 (it has not seen the start yet) is asked again. */
  notFoundRetryMs?: number;
  /** How long a seed answering 503 (bringing its copy up to date, or busy) is asked again. */
  busyRetryMs?: number;
  /** How long a sibling waits for its seed's answer about the current build. */
  buildAskTimeoutMs?: number;
  /** Seed choice over the members (default: rendezvous pickSeed). Tests inject disagreeing views. */
  pickSeed?: (meetingId: string, members: string[]) => string | null;
}

/** What the tier did, for /api/status and /metrics. */
export interface SiteCounters {
  /** Downloads that came from a sibling and were promoted (or equal to the held package). */
  peerFetches: number;
  /** Downloads from a sibling that failed and went to the master instead. */
  fallbacks: number;
  /** Builds learnt from the seed instead of probing the master. */
  buildsFromSeed: number;
  /** Times the seed could not say and this node probed the master itself. */
  buildAskFailures: number;
}

/** The identity of a held package as the build route answers it. */
export interface BuildAnswer {
  buildId: string;
  documentsId: string | null;
  sha256: string | null;
  size: number | null;
  token: string | null;
}

export class SiteTier {
  readonly #deps: SiteTierDeps;
  readonly #counters: SiteCounters = { peerFetches: 0, fallbacks: 0, buildsFromSeed: 0, buildAskFailures: 0 };
  /** The last fallback per sibling, for the panel and the log. */
  #lastFailure: { node: string; reason: string; at: number } | null = null;

  constructor(deps: SiteTierDeps) {
    this.#deps = deps;
  }

  get enabled(): boolean {
    return this.#deps.settings().enabled;
  }

  get counters(): SiteCounters {
    return { ...this.#counters };
  }

  get lastFailure(): { node: string; reason: string; at: number } | null {
    return this.#lastFailure;
  }

  get members(): SiteMembers {
    return this.#deps.members;
  }

  /**
   * The meeting's seed when it is another node (membership refreshed if older than a few
   * seconds), or null: this node is the seed, or the tier is off.
   */
  async seedFor(meetingId: string): Promise<string | null> {
    if (!this.enabled) return null;
    const members = await this.#deps.members.members(this.#deps.membersMaxAgeMs ?? 3_000);
    return this.#otherSeed(meetingId, members);
  }

  /** The seed by the membership already known (no request): for status. Null: this node. */
  seedNow(meetingId: string): string | null {
    if (!this.enabled) return null;
    return this.#otherSeed(meetingId, this.#deps.members.view().members);
  }

  #otherSeed(meetingId: string, members: string[]): string | null {
    const seed = (this.#deps.pickSeed ?? pickSeed)(meetingId, members);
    return seed === null || seed === this.#deps.self() ? null : seed;
  }

  /** A sibling failed this node: left out of the membership for a while, logged and counted. */
  fellBack(seed: string, meetingId: string, reason: string): void {
    this.#counters.fallbacks++;
    this.#lastFailure = { node: seed, reason, at: Date.now() };
    this.#deps.members.markFailed(seed);
    this.#deps.logger.warn(`site ${meetingId}: fetching from ${seed} failed (${reason}); fetching from the master instead`);
  }

  peerFetched(): void {
    this.#counters.peerFetches++;
  }

  /**
   * Opens the seed's download of the meeting's package. A 404 (the seed has not seen the start)
   * is asked again for a few seconds, a 503 (it is bringing its copy up to date) a little longer;
   * anything else but 200 fails (FetchError, code PEER_*).
   */
  async openFromSeed(
    seed: string,
    meetingId: string,
    want: { token: string | null; build: string | null; notBuilds: readonly string[] },
    options: { signal: AbortSignal; headersTimeoutMs: number },
  ): Promise<PackageResponse> {
    const started = Date.now();
    const notFoundMs = this.#deps.notFoundRetryMs ?? 5_000;
    const busyMs = this.#deps.busyRetryMs ?? 20_000;
    const headers: Record<string, string> = { accept: 'application/zip', [PEER_HEADER]: this.#deps.nodeId() };
    if (want.build) headers[BUILD_HEADER] = want.build;
    if (want.token) headers[TOKEN_HEADER] = want.token;
    if (want.notBuilds.length > 0) headers[NOT_BUILD_HEADER] = want.notBuilds.join(',');
    for (;;) {
      const response = await this.#get(seed, packagePath(meetingId), headers, options.signal, options.headersTimeoutMs);
      if (response.statusCode === 200) return { body: response.body, headers: response.headers, trailers: response.trailers };
      response.body.destroy();
      const waited = Date.now() - started;
      const retryable = (response.statusCode === 404 && waited < notFoundMs) || (response.statusCode === 503 && waited < busyMs);
      if (!retryable) throw new FetchError(`seed ${seed} answered HTTP ${response.statusCode}`, 'PEER_STATUS');
      const after = Number(response.headers['retry-after']);
      await sleep(Math.min(Number.isFinite(after) && after > 0 ? after * 1000 : 500, 1_000), undefined, { signal: options.signal }).catch(() => {
        throw options.signal.reason;
      });
    }
  }

  /**
   * Before a sibling's bytes may be promoted: their sha256 must be the seed's ETag for its
   * complete package (a complete package's 200 carries it; a streamed answer ends with it as a
   * trailer, which spares a request after the body; without either, a HEAD asks for it, again
   * while the seed answers 503 as it promotes), and their build the one asked for: that build, or
   * one with its documents that the seed says stands for it (its preheat confirmed at the start),
   * and never one the node held before a restart. Resolves the build asked for when the bytes are
   * of such an equivalent one (the package then stands for it), else null.
   */
  async verify(
    seed: string,
    meetingId: string,
    fetched: FetchedPackage,
    tempPath: string,
    want: { build: string | null; documents: string | null; notBuilds: readonly string[] },
    signal: AbortSignal,
  ): Promise<string | null> {
    const trailer = fetched.trailers[SHA256_TRAILER];
    let etag = fetched.headers.etag ?? (trailer !== undefined && /^[0-9a-f]{64}$/.test(trailer) ? `"${trailer}"` : null);
    if (etag === null) {
      for (let tries = 0; ; tries++) {
        const head = await this.#get(seed, packagePath(meetingId), { [PEER_HEADER]: this.#deps.nodeId() }, signal, 5_000, 'HEAD');
        head.body.destroy();
        if (head.statusCode === 200 && head.headers.etag) {
          etag = head.headers.etag;
          break;
        }
        if (head.statusCode !== 503 || tries >= 10) throw new FetchError(`seed ${seed} confirmed no ETag (HEAD answered ${head.statusCode})`, 'PEER_UNCONFIRMED');
        await sleep(200);
      }
    }
    if (etag !== `"${fetched.sha256}"`) {
      throw new FetchError(`bytes from ${seed} hash to ${fetched.sha256.slice(0, 12)}… but its package's ETag is ${etag.slice(0, 16)}…`, 'PEER_MISMATCH');
    }
    if (want.build === null && want.notBuilds.length === 0) return null;
    const identity = await fileIdentity(tempPath);
    if (isAnyBuild(identity, want.notBuilds)) {
      throw new FetchError(`${seed} sent the build held before the meeting restarted (it has not seen the restart)`, 'PEER_STALE_BUILD');
    }
    if (want.build === null || isBuild(identity, want.build)) return null;
    const vouched = fetched.headers[STANDS_FOR_HEADER] === want.build;
    if (vouched && want.documents !== null && identity.documentsId === want.documents) return want.build;
    throw new FetchError(`${seed} sent another build than the one asked for`, 'PEER_OTHER_BUILD');
  }

  /**
   * The current build of a meeting as its seed knows it (the seed probes the master if it must),
   * so that one probe per site tells every node. Null when this node is the seed or the tier is
   * off; an 'unknown' result when the seed could not say (the caller then probes the master).
   */
  async askSeed(meetingId: string, token: string | null): Promise<{ seed: string; result: ProbeResult } | null> {
    const seed = await this.seedFor(meetingId);
    if (seed === null) return null;
    const timeoutMs = this.#deps.buildAskTimeoutMs ?? 15_000;
    const query = token === null ? '' : `?token=${encodeURIComponent(token)}`;
    try {
      const response = await this.#get(seed, `${buildPath(meetingId)}${query}`, { accept: 'application/json', [PEER_HEADER]: this.#deps.nodeId() }, AbortSignal.timeout(timeoutMs), timeoutMs);
      const text = await readBoundedText(response.body, 4096);
      if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`);
      const answer = JSON.parse(text) as Partial<BuildAnswer>;
      if (typeof answer.buildId !== 'string' || !/^[0-9a-f]{64}$/.test(answer.buildId)) throw new Error('no build id in the answer');
      this.#counters.buildsFromSeed++;
      return {
        seed,
        result: { kind: 'identified', identity: { buildId: answer.buildId, documentsId: typeof answer.documentsId === 'string' ? answer.documentsId : null, length: 0 }, bytesRead: 0, seed },
      };
    } catch (error) {
      this.#counters.buildAskFailures++;
      const reason = (error as Error).message;
      if ((error as NodeJS.ErrnoException).code === 'ECONNREFUSED' || (error as NodeJS.ErrnoException).code === 'CONNECT_TIMEOUT') this.#deps.members.markFailed(seed);
      return { seed, result: { kind: 'unknown', reason: `seed ${seed} could not say: ${reason}`, bytesRead: 0 } };
    }
  }

  /**
   * Which build is current, the site's way: the seed probes the master (`probeMaster`), a
   * sibling asks the seed and probes the master itself only when the seed cannot say.
   */
  async probe(meetingId: string, token: string | null, probeMaster: () => Promise<ProbeResult>): Promise<ProbeResult> {
    const asked = await this.askSeed(meetingId, token).catch(() => null);
    if (asked?.result.kind === 'identified') return asked.result;
    if (asked) this.#deps.logger.info(`probe ${meetingId}: ${asked.result.kind === 'unknown' ? asked.result.reason : ''}; probing the master itself`);
    return probeMaster();
  }

  #get(seed: string, path: string, headers: Record<string, string>, signal: AbortSignal, headersTimeoutMs: number, method: 'GET' | 'HEAD' = 'GET'): Promise<PackageGetResponse> {
    const { host, port } = splitAddress(seed);
    return packageGet({ host, port, path, headers, method, signal, connectTimeoutMs: this.#deps.settings().connectTimeoutMs, headersTimeoutMs }).catch((error: NodeJS.ErrnoException) => {
      if (signal.aborted) throw signal.reason;
      throw new FetchError(`seed ${seed}: ${error.message}`, error.code ?? 'PEER_ERROR');
    });
  }
}

export function packagePath(meetingId: string): string {
  return `/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package`;
}

export function buildPath(meetingId: string): string {
  return `/api/edge/v1/meetings/${encodeURIComponent(meetingId)}/build`;
}

/** host:port, [v6]:port → the parts packageGet wants. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(colon + 1)) };
}
