import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log/logger.ts';
import { isValidMeetingId } from '../meeting-id.ts';
import { DEFAULT_POLICY, type NodePolicy } from '../policy.ts';
import type { NodeConfig } from '../config/schema.ts';
import type { PackageStore, StoredPackage } from '../store/package-store.ts';
import type { FetchView } from '../sync/fetch-view.ts';
import type { Reconciler } from '../sync/reconciler.ts';
import { handleBuildIdentity, handleHealth, holdsWanted, peerPackageHeaders, peerRequest, type PeerRequest, type PeerServeStats, type SeedSigner } from '../site/seed-serving.ts';
import { SHA256_TRAILER, SIGNATURE_HEADER } from '../site/wire.ts';
import type { ServeRecord, ServeStats } from './serve-stats.ts';
import { buildPathId, DOWNLOAD_CORS, downloadPathId, isHealthUrl } from '../download-urls.ts';
import { sendFile, sendFromMetadata, type PackageMeta } from './send-file.ts';
import type { SharedPackageFiles } from './shared-package-files.ts';
import type { SendResult } from './response-outcome.ts';
import type { SharedReadFiles } from './shared-files.ts';
import { sendJson } from '../send-json.ts';
import { canTail, tailDownload, type TailLimit } from './tail-send.ts';
import type { ZeroCopy } from './zero-copy.ts';
import type { BodyHandOff } from './body-handoff.ts';

export interface DownloadDeps {
  store: PackageStore;
  sync: Reconciler;
  stats: ServeStats;
  logger: Logger;
  /** False while the operator has stopped the service: downloads answer 503. */
  serving: () => boolean;
  settings: () => DownloadSettings;
  /**
   * Tablets of an active meeting whose package is still syncing are served from the download as
   * it arrives, at most `tailing.max` of them (waiting or streaming) at once; past that, 503 +
   * Retry-After. Without it they wait for the sync to finish (bounded by waitForSyncMs), unbounded
   * in number, as before serve-while-downloading existed.
   */
  tailing?: TailLimit;
  /** Descriptors of download temp files, shared by the tablets tailing them (one open per attempt). */
  tailFiles?: SharedReadFiles;
  /** One descriptor per stored package for every response sending it; absent: one open per response. */
  packageFiles?: SharedPackageFiles;
  /** sendfile(2) for complete packages (zero-copy.ts); null or absent: copy through Buffers. */
  zeroCopy?: ZeroCopy | null;
  /** Large bodies of complete packages sent by the addon's event-loop transfers (body-handoff.ts); null or absent: pumped here. */
  handOff?: BodyHandOff | null;
  /**
   * The site tier's serving side: bytes served to sibling nodes counted apart. Absent: a
   * sibling's request (X-Edge-Peer) is still answered by the tier's rules, uncounted.
   */
  peers?: PeerServeStats;
  /** Signs what is served to siblings (the site key); absent: nothing is signed, siblings take nothing from here. */
  signer?: SeedSigner;
}

/** The route's settings from the node's config and policy. */
export function downloadSettings(config: NodeConfig, policy: NodePolicy): DownloadSettings {
  return {
    waitForSyncMs: policy.waitForSyncMs,
    // network.downloadTimeout may be lower than the floor: a tablet reading a package still
    // syncing waits on the master's pace, which the tablet cannot help.
    idleTimeoutMs: Math.max(policy.minDownloadIdleTimeoutMs, config.network.downloadTimeout * 1000),
    retryAfterSeconds: policy.retryAfterSeconds,
    settleWaitMs: policy.settleWaitMs,
    buildAnswerWaitMs: policy.buildAnswerWaitMs,
  };
}

export interface DownloadSettings {
  /** How long a tablet may wait for an in-flight sync of an active meeting (to start, or to finish) before 503. */
  waitForSyncMs: number;
  /** Destroy a response whose client took no bytes for this long. */
  idleTimeoutMs: number;
  retryAfterSeconds: number;
  /** How long the build-identity route waits for a probe of the master before 503 (default: policy.ts). */
  buildAnswerWaitMs?: number;
  /**
   * A request for an id not active here (or a preheated package not yet confirmed) waits this long
   * at most for the node's shared status check before it is answered (default: policy.ts).
   */
  settleWaitMs?: number;
}

/**
 * GET/HEAD of a meeting package, on the master's own URLs. Answers from storage when the package
 * is complete (HEAD and revalidations from memory, without opening the file); for an active
 * meeting still syncing, joins (or starts) the one download job and streams it as it arrives, or
 * waits a bounded time for it; for ids the master does not list as active, 404 after one shared
 * status check (a meeting that has just started is served, not refused).
 */
export async function handleDownload(deps: DownloadDeps, meetingId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!isValidMeetingId(meetingId)) {
    return sendJson(res, 400, { error: 'invalid meeting id', field: 'id' });
  }
  deps.stats.requested();
  if (!deps.serving()) {
    return sendJson(res, 503, { error: 'service stopped by the operator' }, { 'retry-after': String(deps.settings().retryAfterSeconds) });
  }
  const peer = peerRequest(req);
  if (peer) {
    deps.peers && deps.peers.requests++;
    if (await answeredForPeer(deps, meetingId, peer, req, res)) return;
  }
  // A tablet (not a sibling: it names the build it wants) waits for its package's check after a
  // token change, and is sent to the new build's download when the held one is older.
  const older = () => peer === null && deps.sync.replacing(meetingId);
  if (!deps.sync.isServable(meetingId) || (peer === null && deps.sync.awaitsTokenCheck(meetingId))) {
    // Maybe the meeting started since our last poll, or its preheated package awaits the start's
    // check: wait (bounded) for the shared status check / the confirmation, never asking the
    // master for a package of an id it does not list as active.
    await deps.sync.settleRequest(meetingId, deps.settings().settleWaitMs ?? DEFAULT_POLICY.settleWaitMs);
    if (res.destroyed) return;
  }
  if (!deps.sync.isServable(meetingId) || older()) {
    const active = deps.sync.activeMeeting(meetingId);
    if (!active) {
      return sendJson(res, 404, { error: `meeting ${meetingId} is not available on this node`, field: 'id' });
    }
    // A download started for a sibling comes from the master (never from another sibling).
    const job = deps.sync.requestSync(meetingId, { forPeer: peer !== null });
    if (peer && job && job.source.kind === 'peer') return refuseAsNotSeed(deps, res);
    const settings = deps.settings();
    if (job) {
      const limit = deps.tailing;
      if (limit && !limit.tryAcquire()) {
        return sendJson(
          res,
          503,
          { error: `too many tablets waiting for packages still syncing (${limit.max}), retry shortly` },
          { 'retry-after': String(settings.retryAfterSeconds) },
        );
      }
      try {
        const outcome = limit && canTail(req) ? await tailOrWait(deps, meetingId, job, req, res, peer) : await waitForJob(job, res, settings.waitForSyncMs);
        if (outcome === 'closed' || outcome === 'served') return;
      } finally {
        limit?.release();
      }
    }
    if (!deps.sync.isServable(meetingId)) {
      const failure = job?.error;
      return sendJson(
        res,
        503,
        { error: failure ? `package not available yet: ${failure}` : 'package is still syncing, retry shortly' },
        { 'retry-after': String(settings.retryAfterSeconds) },
      );
    }
  }
  await serveStored(deps, meetingId, req, res, peer);
}

/**
 * The site tier's rules for a sibling's request, before it is served like a tablet's. True when
 * answered here: 409 when this node's own download of the package comes from a sibling (it is
 * not the seed: no loops), or when it holds another build than the one asked for, its running
 * download streamed (the asker checks the build) or, with none running, 503 + Retry-After while
 * it probes the master (then fetches if the build is new). False: serve it like a tablet.
 */
async function answeredForPeer(deps: DownloadDeps, meetingId: string, peer: PeerRequest, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const running = deps.sync.inFlight(meetingId);
  if (running && running.source.kind === 'peer') {
    refuseAsNotSeed(deps, res);
    return true;
  }
  const held = deps.store.get(meetingId);
  if (!held || !deps.sync.isServable(meetingId) || holdsWanted(held, peer)) return false;
  if (running && canTail(req)) {
    const outcome = await tailOrWait(deps, meetingId, running, req, res, peer);
    if (outcome === 'closed' || outcome === 'served') return true;
    // The download ended meanwhile: what is held now may be what was asked for.
    const now = deps.store.get(meetingId);
    if (now && holdsWanted(now, peer)) return false;
  } else if (!running) {
    void deps.sync.probeForPeer(meetingId).catch(() => {});
    if (peer.token !== null && peer.token !== deps.sync.lastSuccess?.token) void deps.sync.refreshSoon().catch(() => {});
  }
  if (deps.peers) deps.peers.busy++;
  sendJson(res, 503, { error: 'bringing this package up to date for the build asked for, retry shortly' }, { 'retry-after': '1' });
  return true;
}

function refuseAsNotSeed(deps: DownloadDeps, res: ServerResponse): void {
  if (deps.peers) deps.peers.refused++;
  sendJson(res, 409, { error: 'not the seed: this node fetches this package from a sibling itself' });
}

/** Counts bytes served: every byte in the meeting's figures, a sibling's also in the peers' own. */
function countBytes(deps: DownloadDeps, meetingId: string, peer: PeerRequest | null): (n: number) => void {
  const peers = peer ? deps.peers : undefined;
  if (!peers) return (n) => deps.stats.bytes(meetingId, n);
  return (n) => {
    deps.stats.bytes(meetingId, n);
    peers.served(meetingId, n);
  };
}

async function serveStored(deps: DownloadDeps, meetingId: string, req: IncomingMessage, res: ServerResponse, peer: PeerRequest | null): Promise<void> {
  const held = deps.store.get(meetingId);
  const options = { idleTimeoutMs: deps.settings().idleTimeoutMs, onBytes: countBytes(deps, meetingId, peer), zeroCopy: deps.zeroCopy ?? null, handOff: deps.handOff ?? null };
  // A sibling's answer, HEAD included, carries the seed's signature of the package.
  if (peer && held) for (const [name, value] of Object.entries(peerPackageHeaders(deps.signer, meetingId, held))) res.setHeader(name, value);
  // HEAD and revalidations (304) need no byte of the file: answered from the in-memory manifest.
  if (held && (await sendFromMetadata(req, res, packageMeta(held, meetingId), options))) return;

  const opened = deps.packageFiles ? await deps.packageFiles.acquire(meetingId) : await deps.store.open(meetingId);
  if (!opened) {
    return sendJson(res, 503, { error: 'package is being replaced, retry shortly' }, { 'retry-after': '1' });
  }
  const { pkg, fd } = opened;
  const giveBack = 'release' in opened ? () => opened.release() : undefined;
  // The package opened may have replaced the one the headers above were signed for.
  if (peer) for (const [name, value] of Object.entries(peerPackageHeaders(deps.signer, meetingId, pkg))) res.setHeader(name, value);
  const counted = req.method !== 'HEAD';
  const startedAt = Date.now();
  // Read now: once the socket is closed it no longer knows its peer, and a handed-off body's
  // request is let go of before the body ends.
  const request = requestFacts(req);
  if (counted) deps.stats.started(meetingId);
  const finish = (result: SendResult) => {
    if (counted) deps.stats.finished(meetingId, result.completed && (result.status === 200 || result.status === 206), downloadRecord(request, result, startedAt, false, peer));
    if (result.abortReason === 'server-error') deps.logger.error(`serve ${meetingId}: ${result.error?.message ?? 'read error'}`);
  };
  const result = await sendFile(req, res, { fd, giveBack, ...packageMeta(pkg, meetingId) }, options);
  // Not awaited: nothing here may hold the request or response while the addon sends the body.
  if ('handedOff' in result) void result.handedOff.then(finish);
  else finish(result);
}

/** What the access log keeps of a request. References to the strings the parser already made: nothing is copied per request. */
interface RequestFacts {
  client: string | null;
  method: string;
  range: string | null;
  userAgent: string | null;
}

function requestFacts(req: IncomingMessage): RequestFacts {
  const { range, 'user-agent': userAgent } = req.headers;
  return { client: req.socket.remoteAddress ?? null, method: req.method ?? 'GET', range: range ?? null, userAgent: userAgent ?? null };
}

function downloadRecord(request: RequestFacts, result: SendResult, startedAt: number, whileSyncing: boolean, peer: PeerRequest | null): ServeRecord {
  return {
    client: request.client,
    status: result.status,
    bytes: result.bytesSent,
    durationMs: Date.now() - startedAt,
    whileSyncing,
    peer: peer?.node ?? null,
    method: request.method,
    range: request.range,
    userAgent: request.userAgent,
  };
}

function packageMeta(pkg: StoredPackage, meetingId: string): PackageMeta {
  return { size: pkg.size, sha256: pkg.sha256, lastModified: new Date(pkg.fetchedAt), filename: `meeting_${meetingId}.zip` };
}

/**
 * The trailers of a sibling's streamed answer: the sha256 of the package the tailed download just
 * became and the seed's signature of it, if what is held is that package (no stands-for header
 * was sent: a streamed download stands for itself).
 */
function peerTrailers(deps: DownloadDeps, meetingId: string, size: number): Record<string, string> | null {
  const held = deps.store.get(meetingId);
  if (!held || held.size !== size) return null;
  const signature = deps.signer?.package(meetingId, held, null);
  return { [SHA256_TRAILER]: held.sha256, ...(signature ? { [SIGNATURE_HEADER]: signature } : {}) };
}

type WaitOutcome = 'served' | 'closed' | 'settled' | 'timeout';

/**
 * Streams the job's download to the tablet as soon as it has bytes on disk. Until then (queued for
 * a download slot, or waiting for the master's first byte) waits, at most waitForSyncMs. 'settled'
 * or 'timeout' without having served: the caller serves from storage or answers 503.
 */
async function tailOrWait(deps: DownloadDeps, meetingId: string, job: FetchView, req: IncomingMessage, res: ServerResponse, peer: PeerRequest | null): Promise<WaitOutcome> {
  const deadline = Date.now() + deps.settings().waitForSyncMs;
  const request = requestFacts(req);
  for (;;) {
    if (job.state === 'running' && job.bytesWritten > 0) {
      let startedAt = Date.now();
      const result = await tailDownload(req, res, job, {
        idleTimeoutMs: deps.settings().idleTimeoutMs,
        filename: `meeting_${meetingId}.zip`,
        files: deps.tailFiles,
        onStart: () => {
          startedAt = Date.now();
          deps.stats.started(meetingId);
        },
        onBytes: countBytes(deps, meetingId, peer),
        trailers: peer === null ? undefined : { names: [SHA256_TRAILER, SIGNATURE_HEADER], values: (size) => peerTrailers(deps, meetingId, size) },
      });
      if (result) {
        deps.stats.finished(meetingId, result.completed, downloadRecord(request, result, startedAt, true, peer));
        // Mostly the sync failing, which the sync already logs once (not once per tablet).
        if (result.abortReason === 'server-error') deps.logger.debug(`serve ${meetingId} while syncing: cut (${result.error?.message ?? 'error'})`);
        return 'served';
      }
    }
    const remaining = deadline - Date.now();
    if (job.settled) return 'settled';
    if (remaining <= 0) return 'timeout';
    const next = await nextJobEvent(job, res, remaining);
    if (next !== 'progress') return next;
  }
}

/** Waits for the job to finish (or the client to leave), at most `ms`. */
async function waitForJob(job: FetchView, res: ServerResponse, ms: number): Promise<WaitOutcome> {
  const closed = new Promise<'closed'>((resolve) => res.once('close', () => resolve('closed')));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([job.done.then(() => 'settled' as const, () => 'settled' as const), timeout, closed]);
  } finally {
    clearTimeout(timer);
  }
}

/** The job's next bytes or its end, the client leaving, or `ms` passing, whichever is first. */
function nextJobEvent(job: FetchView, res: ServerResponse, ms: number): Promise<'progress' | 'settled' | 'closed' | 'timeout'> {
  return new Promise((resolve) => {
    const finish = (outcome: 'progress' | 'settled' | 'closed' | 'timeout') => {
      clearTimeout(timer);
      unsubscribe();
      res.off('close', onClose);
      resolve(outcome);
    };
    const onClose = () => finish('closed');
    const timer = setTimeout(() => finish('timeout'), ms);
    const unsubscribe = job.subscribe({ bytes: () => finish('progress'), settled: () => finish('settled') });
    res.on('close', onClose);
    if (res.destroyed) finish('closed');
  });
}

/**
 * GET and HEAD of the download URLs answered on node:http directly, ahead of the Hono app: Hono
 * answers HEAD by re-dispatching it as GET and wrapping the result in a new web Response, which
 * measured 4x slower than this path (and GET about 25 % slower), and revalidation storms are what
 * tablets do at meeting start. Returns false, having done nothing, for any other request (the
 * caller hands it to the app, which serves these URLs' OPTIONS preflight). Every download response
 * carries the CORS headers (tablet web apps may be on another origin).
 */
export function createDownloadListener(deps: DownloadDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || req.url === undefined) return false;
    const meetingId = downloadPathId(req.url);
    if (meetingId === null && req.method === 'GET' && isHealthUrl(req.url)) {
      handleHealth(deps.signer, req.url, res);
      return true;
    }
    if (meetingId === null) {
      const buildId = req.method === 'GET' ? buildPathId(req.url) : null;
      if (buildId === null) return false;
      const url = req.url;
      const settings = deps.settings();
      handleBuildIdentity({ ...deps, retryAfterSeconds: settings.retryAfterSeconds, waitMs: settings.buildAnswerWaitMs ?? DEFAULT_POLICY.buildAnswerWaitMs }, buildId, url, res).catch((error: Error) => {
        deps.logger.error(`http GET ${url}: ${error.message}`);
        if (res.headersSent) res.destroy();
        else sendJson(res, 500, { error: 'internal error' });
      });
      return true;
    }
    for (const [name, value] of Object.entries(DOWNLOAD_CORS)) res.setHeader(name, value);
    handleDownload(deps, meetingId, req, res).catch((error: Error) => {
      deps.logger.error(`http ${req.method} ${req.url}: ${error.message}`);
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: 'internal error' });
    });
    return true;
  };
}
