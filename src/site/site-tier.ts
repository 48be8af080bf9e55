/**
 * The site tier (issues 12 and 18): nodes that share a master fetch each package from the master
 * once per site. For each meeting every node picks the same seed by rendezvous hashing over the
 * site's healthy, proven members (rendezvous.ts, site-members.ts, health.ts); the seed fetches
 * from the master, every other node fetches from the seed's own download URL (which streams a
 * package while it is still arriving), and only the seed probes the master for the current build:
 * its siblings ask it.
 *
 * This is the asking side: which node is the seed, the request to it, the checks before a
 * sibling's bytes may be promoted, the watch on a seed gone silent, and the counters an operator
 * reads. The seed's side is seed-serving.ts; the wire names are in wire.ts.
 *
 * A sibling is trusted only as far as it can be checked: it must have proved the site key (its
 * health answers), the bytes must be a complete zip the seed signed (site-key.ts: meeting, build,
 * byte count, sha256 of exactly the bytes received, its address), and the build asked for. A bad
 * or missing signature is a security event: the bytes are dropped, counted and logged, and the
 * download goes to the master. A seed that stops sending and does not answer its health probe is
 * abandoned for the next healthy member.
 *
 * Sits below sync/: the sync uses it through the methods below and hands it nothing of its own.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.ts';
import { SITE_POLICY } from '../policy.ts';
import { readBoundedText, type PackageResponse } from '../master/master-client.ts';
import type { PackageGetResponse } from '../master/package-get.ts';
import { buildPath, packagePath } from '../download-urls.ts';
import { isAnyBuild, isBuild } from '../store/package-state.ts';
import { fileIdentity } from '../store/zip-lead.ts';
import type { SiteHealth } from './health.ts';
import { pickSeed, rendezvousOrder } from './rendezvous.ts';
import { watchSeed, type SeedWatch } from './seed-watch.ts';
import { buildMessage, newNonce, packageMessage, type SiteKeyring } from './site-key.ts';
import type { SiteMembers } from './site-members.ts';
import { BUILD_HEADER, NONCE_PARAM, NOT_BUILD_HEADER, PEER_HEADER, SHA256_TRAILER, SIGNATURE_HEADER, siblingGet, STANDS_FOR_HEADER, TOKEN_HEADER } from './wire.ts';

export interface PeerSettings {
  /** peers.enabled: false turns the tier off (every fetch and probe goes to the master). */
  enabled: boolean;
  /** peers.connectTimeout: a seed that does not accept within this long has failed. */
  connectTimeoutMs: number;
  /** peers.stallTimeout: this long without a byte from the seed, its health is asked. */
  stallTimeoutMs: number;
}

export interface SiteTierDeps {
  members: SiteMembers;
  health: SiteHealth;
  /** The site key(s): without a current key the tier is off. */
  keyring: () => SiteKeyring;
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
  /** How long a sibling waits for its seed's answer about the current build before it asks the master. */
  buildAskTimeoutMs?: number;
  /** Seed choice over the members (default: rendezvous pickSeed). Tests inject disagreeing views. */
  pickSeed?: (meetingId: string, members: string[]) => string | null;
}

/** What the tier did, for /api/status and /metrics. */
export interface SiteCounters {
  /** Downloads that came from a sibling and were promoted (or equal to the held package). */
  peerFetches: number;
  /** Downloads from a sibling that failed and went to the master (or the next member) instead. */
  fallbacks: number;
  /** Builds learnt from the seed instead of probing the master. */
  buildsFromSeed: number;
  /** Times the seed could not say and this node probed the master itself. */
  buildAskFailures: number;
  /** Answers from a sibling that failed their signature: bytes dropped, answer ignored. */
  securityEvents: number;
  /** Seeds abandoned mid-download (silent and not answering health, or the connection reset). */
  handovers: number;
  /** Downloads that went on from the bytes kept of an abandoned seed's (the next member answered 206). */
  resumes: number;
  /** Bytes kept that way instead of fetched again. */
  resumedBytes: number;
}

/**
 * Where a download abandoned mid-stream can go on from: `bytes` of the package are in its temp
 * file, and the seed signed the whole package as `size` bytes with this sha256. The next member
 * is asked for the rest only of exactly that package (If-Range on its ETag).
 */
export interface ResumePoint {
  bytes: number;
  size: number;
  sha256: string;
}

/** A sibling's failure or a security event, for the panel. */
export interface SiteEvent {
  node: string;
  reason: string;
  at: number;
}

/** The identity of a held package as the build route answers it. */
export interface BuildAnswer {
  buildId: string;
  documentsId: string | null;
  sha256: string | null;
  size: number | null;
  token: string | null;
  /** The seed's signature (site-key.ts buildMessage) over the asker's nonce; null without a key or nonce. */
  signature: string | null;
}

/** What the seed said about the current build: its word (signed), or why it could not say. */
export type SeedAnswer =
  | { kind: 'identified'; seed: string; buildId: string; documentsId: string | null }
  | { kind: 'unknown'; seed: string; reason: string };

/** The bytes received from a seed, as the sync measured them. */
export interface ReceivedPackage {
  sha256: string;
  size: number;
  headers: Record<string, string>;
  trailers: Record<string, string>;
}

/** A sibling failed this download; `code` names the case (PEER_*). */
export class PeerError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'PeerError';
  }
}

type Wanted = { build: string | null; documents: string | null; notBuilds: readonly string[] };

/**
 * Whether bytes of `identity`, said by their seed to stand for `standsFor`, are the build asked
 * for: 'stale' (a build held before a restart), 'other', or yes, with the build they then stand
 * for when it is not their own (null: their own).
 */
function buildVerdict(identity: { buildId: string; documentsId: string | null }, standsFor: string | null, want: Wanted): 'stale' | 'other' | { standsFor: string | null } {
  if (isAnyBuild(identity, want.notBuilds)) return 'stale';
  if (want.build === null || isBuild(identity, want.build)) return { standsFor: null };
  if (standsFor === want.build && want.documents !== null && identity.documentsId === want.documents) return { standsFor: want.build };
  return 'other';
}

/** The whole package's size an answer states: a 206's Content-Range total, else its Content-Length; null when neither. */
function packageSize(headers: Record<string, string>): number | null {
  const range = /^bytes \d+-\d+\/(\d+)$/.exec(headers['content-range'] ?? '');
  const text = range ? range[1] : headers['content-length'];
  const size = text !== undefined && /^\d+$/.test(text) ? Number(text) : NaN;
  return Number.isSafeInteger(size) ? size : null;
}

/** Connection failures that say the seed is gone (not merely busy): hand over at once. */
const DEAD_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'CONNECT_TIMEOUT', 'EPIPE', 'TRUNCATED', 'PEER_STALLED']);

export class SiteTier {
  readonly #deps: SiteTierDeps;
  readonly #counters: SiteCounters = { peerFetches: 0, fallbacks: 0, buildsFromSeed: 0, buildAskFailures: 0, securityEvents: 0, handovers: 0, resumes: 0, resumedBytes: 0 };
  /** The last fallback per sibling, for the panel and the log. */
  #lastFailure: SiteEvent | null = null;
  #lastSecurityEvent: SiteEvent | null = null;
  /**
   * When a meeting's seed was last found dead here: for a while after, the next member answering
   * 409 (its own download still comes from that seed; it is about to find it dead too) is asked
   * again rather than taken for a disagreement about the seed.
   */
  #handedOverAt = new Map<string, number>();

  constructor(deps: SiteTierDeps) {
    this.#deps = deps;
  }

  /** On when peers.enabled and a site key is set. */
  get enabled(): boolean {
    return this.#deps.settings().enabled && this.#deps.keyring().enabled;
  }

  /** Whether a site key is set (the key itself is never shown). */
  get keySet(): boolean {
    return this.#deps.keyring().enabled;
  }

  /** Why the tier is off, said once to the operator with how to turn it on; null when on. */
  get offReason(): string | null {
    if (!this.#deps.settings().enabled) return 'peers.enabled is false: every package comes from the master';
    if (!this.#deps.keyring().enabled) {
      return 'no site key: every package comes from the master. To share packages between the nodes of a site, set the same peers.key (or EDGE_SITE_KEY) on each, from: node start.js --new-site-key';
    }
    return null;
  }

  get counters(): SiteCounters {
    return { ...this.#counters };
  }

  get lastFailure(): SiteEvent | null {
    return this.#lastFailure;
  }

  get lastSecurityEvent(): SiteEvent | null {
    return this.#lastSecurityEvent;
  }

  get members(): SiteMembers {
    return this.#deps.members;
  }

  get health(): SiteHealth {
    return this.#deps.health;
  }

  /** Starts probing the members' health, and says in one line whether the tier is on and why not. */
  start(): void {
    const off = this.offReason;
    this.#deps.logger.info(off === null ? 'site tier on: packages are shared with the siblings that prove the site key' : `site tier off: ${off}`);
    this.#deps.health.start();
  }

  /**
   * The meeting's seed when it is another node (membership refreshed if older than a few
   * seconds), or null: this node is the seed, or the tier is off.
   */
  async seedFor(meetingId: string): Promise<string | null> {
    if (!this.enabled) return null;
    const members = await this.#deps.members.members(this.#deps.membersMaxAgeMs ?? SITE_POLICY.membersMaxAgeMs);
    await this.#deps.health.probeNew();
    return this.#otherSeed(meetingId, members);
  }

  /** The seed by the membership and health already known (no request): for status. Null: this node. */
  seedNow(meetingId: string): string | null {
    if (!this.enabled) return null;
    return this.#otherSeed(meetingId, this.#deps.members.view().members);
  }

  /** The members that may seed, in the meeting's rendezvous order: this node, and proven healthy siblings. */
  candidates(meetingId: string): string[] {
    const self = this.#deps.self();
    return rendezvousOrder(meetingId, this.#deps.members.view().members.filter((m) => m === self || this.#deps.health.usable(m)));
  }

  #otherSeed(meetingId: string, members: string[]): string | null {
    const self = this.#deps.self();
    const usable = members.filter((m) => m === self || this.#deps.health.usable(m));
    const seed = (this.#deps.pickSeed ?? pickSeed)(meetingId, usable);
    return seed === null || seed === self ? null : seed;
  }

  /**
   * A sibling failed this node's download: counted and logged. True when the seed was found dead
   * (silent and not answering its health probe, or its connection refused or reset): it is marked
   * sick and the next attempt takes the next healthy member in rendezvous order (the master when
   * that is this node). False: the attempts left go to the master.
   */
  fellBack(seed: string, meetingId: string, error: { message: string; code?: string }): boolean {
    this.#counters.fallbacks++;
    const reason = error.message;
    this.#lastFailure = { node: seed, reason, at: Date.now() };
    const dead = (error.code !== undefined && DEAD_CODES.has(error.code)) || !this.#deps.health.usable(seed);
    if (dead) {
      this.#counters.handovers++;
      this.#handedOverAt.set(meetingId, Date.now());
      this.#deps.health.markSick(seed, reason);
      this.#deps.logger.warn(`site ${meetingId}: seed ${seed} is gone (${reason}); taking the package from the next healthy member`);
      return true;
    }
    this.#deps.members.markFailed(seed);
    this.#deps.logger.warn(`site ${meetingId}: fetching from ${seed} failed (${reason}); fetching from the master instead`);
    return false;
  }

  /** A download from a sibling was promoted; `resumedFrom`: bytes of it kept from an abandoned seed. */
  peerFetched(resumedFrom = 0): void {
    this.#counters.peerFetches++;
    if (resumedFrom > 0) {
      this.#counters.resumes++;
      this.#counters.resumedBytes += resumedFrom;
    }
  }

  /**
   * Watches a download from a seed: when no byte came for peers.stallTimeout, the seed's health
   * is asked at once; an answer (a live seed waiting on a slow master) is waited on, no answer
   * within the probe's timeout marks it sick and aborts the download (PEER_STALLED).
   */
  watchSeed(seed: string): SeedWatch {
    return watchSeed(this.#deps.health, seed, this.#deps.settings().stallTimeoutMs, (message) => new PeerError(message, 'PEER_STALLED'));
  }

  /**
   * Opens the seed's download of the meeting's package. A 404 (the seed has not seen the start) is
   * asked again for a few seconds, a 503 (it is bringing its copy up to date) a little longer;
   * anything else but 200 fails (PeerError): a 409 (it fetches from a sibling itself) at once,
   * unless this node just found the meeting's previous seed dead (the new seed is finding it too).
   *
   * With `resume` (bytes kept of an abandoned seed's package), only the rest is asked for, on
   * condition that the seed holds that very package (If-Range on its ETag, send-file.ts's rule):
   * a 206 of exactly it resolves with its offset; a 200 (another package, or one still
   * downloading: a streamed answer has no validator and ignores Range) is the whole package.
   */
  async openFromSeed(
    seed: string,
    meetingId: string,
    want: { token: string | null; build: string | null; notBuilds: readonly string[] },
    options: { signal: AbortSignal; headersTimeoutMs: number },
    resume: ResumePoint | null = null,
  ): Promise<PackageResponse> {
    const started = Date.now();
    const notFoundMs = this.#deps.notFoundRetryMs ?? SITE_POLICY.notFoundRetryMs;
    const handedOverAt = this.#handedOverAt.get(meetingId);
    if (handedOverAt !== undefined && started - handedOverAt > SITE_POLICY.handoverPatienceMs) this.#handedOverAt.delete(meetingId);
    const patient = this.#handedOverAt.has(meetingId);
    const busyMs = this.#deps.busyRetryMs ?? SITE_POLICY.busyRetryMs;
    const headers: Record<string, string> = { accept: 'application/zip', [PEER_HEADER]: this.#deps.nodeId() };
    if (want.build) headers[BUILD_HEADER] = want.build;
    if (want.token) headers[TOKEN_HEADER] = want.token;
    if (want.notBuilds.length > 0) headers[NOT_BUILD_HEADER] = want.notBuilds.join(',');
    if (resume) {
      headers.range = `bytes=${resume.bytes}-`;
      headers['if-range'] = `"${resume.sha256}"`;
    }
    for (;;) {
      const response = await this.#get(seed, packagePath(meetingId), headers, options.signal, options.headersTimeoutMs);
      if (response.statusCode === 200) return { body: response.body, headers: response.headers, trailers: response.trailers };
      if (response.statusCode === 206 && resume) {
        const expected = `bytes ${resume.bytes}-${resume.size - 1}/${resume.size}`;
        if (response.headers['content-range'] === expected && response.headers.etag === `"${resume.sha256}"`) {
          return { body: response.body, headers: response.headers, trailers: response.trailers, offset: resume.bytes };
        }
        response.body.destroy();
        throw new PeerError(`seed ${seed} answered ${response.headers['content-range'] ?? 'a 206 without Content-Range'} for ${expected} of the package kept`, 'PEER_BAD_RANGE');
      }
      response.body.destroy();
      const waited = Date.now() - started;
      const status = response.statusCode;
      const retryable = ((status === 404 || (status === 409 && patient)) && waited < notFoundMs) || (status === 503 && waited < busyMs);
      if (!retryable) throw new PeerError(`seed ${seed} answered HTTP ${status}`, 'PEER_STATUS');
      const after = Number(response.headers['retry-after']);
      await sleep(Math.min(Number.isFinite(after) && after > 0 ? after * 1000 : 500, 1_000), undefined, { signal: options.signal }).catch(() => {
        throw options.signal.reason;
      });
    }
  }

  /**
   * Before a sibling's bytes may be promoted: the seed's signature (a complete package's header,
   * a streamed answer's trailer; without either, a HEAD asks for it, again while the seed answers
   * 503 as it promotes) must verify under an accepted key for exactly these bytes (their sha256
   * and count, the build their lead names, the build the seed says they stand for) and this seed's
   * address; a bad or missing one is a security event. Then their build must be the one asked
   * for: that build, or one with its documents that the seed says stands for it (its preheat
   * confirmed at the start), and never one the node held before a restart. Resolves the build
   * asked for when the bytes are of such an equivalent one (the package then stands for it), else null.
   */
  async verify(
    seed: string,
    meetingId: string,
    received: ReceivedPackage,
    tempPath: string,
    want: Wanted,
    signal: AbortSignal,
  ): Promise<string | null> {
    let signature = received.headers[SIGNATURE_HEADER] ?? received.trailers[SIGNATURE_HEADER] ?? null;
    let standsFor = received.headers[STANDS_FOR_HEADER] ?? null;
    if (signature === null && received.trailers[SHA256_TRAILER] === undefined) {
      // A streamed answer that ended without its trailers (the seed's copy changed meanwhile): ask.
      for (let tries = 0; ; tries++) {
        const head = await this.#get(seed, packagePath(meetingId), { [PEER_HEADER]: this.#deps.nodeId() }, signal, 5_000, 'HEAD');
        head.body.destroy();
        if (head.statusCode === 200) {
          signature = head.headers[SIGNATURE_HEADER] ?? null;
          standsFor = head.headers[STANDS_FOR_HEADER] ?? null;
          break;
        }
        if (head.statusCode !== 503 || tries >= 10) throw new PeerError(`seed ${seed} confirmed nothing (HEAD answered ${head.statusCode})`, 'PEER_UNCONFIRMED');
        await sleep(200);
      }
    }
    const identity = await fileIdentity(tempPath);
    const claim = { meetingId, buildId: identity.buildId, standsFor, size: received.size, sha256: received.sha256, address: seed };
    if (!this.#deps.keyring().verify(packageMessage(claim), signature)) {
      const reason = signature === null ? 'a package without a signature' : 'a package whose signature does not match the bytes received under the site key';
      this.#securityEvent(seed, `${reason} (meeting ${meetingId}, sha256 ${received.sha256.slice(0, 12)}…); dropped`);
      throw new PeerError(`${seed} sent ${reason}`, signature === null ? 'PEER_UNSIGNED' : 'PEER_BAD_SIGNATURE');
    }
    const verdict = buildVerdict(identity, standsFor, want);
    if (verdict === 'stale') throw new PeerError(`${seed} sent the build held before the meeting restarted (it has not seen the restart)`, 'PEER_STALE_BUILD');
    if (verdict === 'other') throw new PeerError(`${seed} sent another build than the one asked for`, 'PEER_OTHER_BUILD');
    return verdict.standsFor;
  }

  /**
   * After a download from `seed` failed with `bytes` of it in `tempPath`: where a next member may
   * go on from, or null when the bytes are worth nothing to it. They are kept only when the seed
   * was sending a complete package (a streamed one has no size or sha256 until its trailer), its
   * signature over that package verifies for the build the kept bytes begin with (the whole first
   * entry is there), and that build is one asked for.
   */
  async resumePoint(
    seed: string,
    meetingId: string,
    headers: Record<string, string>,
    tempPath: string,
    bytes: number,
    want: Wanted,
  ): Promise<ResumePoint | null> {
    const etag = /^"([0-9a-f]{64})"$/.exec(headers.etag ?? '');
    const size = packageSize(headers);
    if (!etag || size === null || bytes <= 0 || bytes >= size) return null;
    const identity = await fileIdentity(tempPath);
    // The first entry must end inside the kept bytes, or the build they begin with is not known.
    if (identity.length >= bytes) return null;
    const standsFor = headers[STANDS_FOR_HEADER] ?? null;
    const sha256 = etag[1] as string;
    const claim = { meetingId, buildId: identity.buildId, standsFor, size, sha256, address: seed };
    if (!this.#deps.keyring().verify(packageMessage(claim), headers[SIGNATURE_HEADER])) return null;
    return typeof buildVerdict(identity, standsFor, want) === 'string' ? null : { bytes, size, sha256 };
  }

  /**
   * The current build of a meeting as its seed knows it (the seed probes the master if it must),
   * so that one probe per site tells every node; signed over this node's nonce, so neither a
   * stranger nor a replayed old answer counts. Null when this node is the seed or the tier is
   * off; 'unknown' when the seed could not say within buildAskTimeoutMs (the caller then probes the master).
   */
  async askSeed(meetingId: string, token: string | null): Promise<SeedAnswer | null> {
    const seed = await this.seedFor(meetingId);
    if (seed === null) return null;
    const timeoutMs = this.#deps.buildAskTimeoutMs ?? SITE_POLICY.buildAskTimeoutMs;
    const nonce = newNonce();
    const query = `?${NONCE_PARAM}=${nonce}${token === null ? '' : `&token=${encodeURIComponent(token)}`}`;
    try {
      const response = await this.#get(seed, `${buildPath(meetingId)}${query}`, { accept: 'application/json', [PEER_HEADER]: this.#deps.nodeId() }, AbortSignal.timeout(timeoutMs), timeoutMs);
      const text = await readBoundedText(response.body, 4096);
      if (response.statusCode !== 200) throw new Error(`HTTP ${response.statusCode}`);
      const answer = JSON.parse(text) as Partial<BuildAnswer>;
      if (typeof answer.buildId !== 'string' || !/^[0-9a-f]{64}$/.test(answer.buildId)) throw new Error('no build id in the answer');
      const documentsId = typeof answer.documentsId === 'string' ? answer.documentsId : null;
      if (!this.#deps.keyring().verify(buildMessage({ meetingId, buildId: answer.buildId, documentsId, nonce, address: seed }), answer.signature)) {
        this.#securityEvent(seed, `a build answer for meeting ${meetingId} ${answer.signature ? 'with a wrong signature' : 'without a signature'}; ignored`);
        throw new Error('its answer is not signed with the site key');
      }
      this.#counters.buildsFromSeed++;
      return { kind: 'identified', seed, buildId: answer.buildId, documentsId };
    } catch (error) {
      this.#counters.buildAskFailures++;
      const reason = (error as Error).message;
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ECONNREFUSED' || code === 'CONNECT_TIMEOUT') this.#deps.members.markFailed(seed);
      return { kind: 'unknown', seed, reason: `seed ${seed} could not say: ${reason}` };
    }
  }

  #securityEvent(node: string, reason: string): void {
    this.#counters.securityEvents++;
    this.#lastSecurityEvent = { node, reason, at: Date.now() };
    this.#deps.logger.warn(`site security: ${node} sent ${reason}`);
  }

  #get(seed: string, path: string, headers: Record<string, string>, signal: AbortSignal, headersTimeoutMs: number, method: 'GET' | 'HEAD' = 'GET'): Promise<PackageGetResponse> {
    return siblingGet(seed, { path, headers, method, signal, connectTimeoutMs: this.#deps.settings().connectTimeoutMs, headersTimeoutMs }).catch((error: NodeJS.ErrnoException) => {
      if (signal.aborted) throw signal.reason;
      throw new PeerError(`seed ${seed}: ${error.message}`, error.code ?? 'PEER_ERROR');
    });
  }
}
