import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log/logger.ts';
import { isValidMeetingId } from '../meeting-id.ts';
import type { PackageStore, StoredPackage } from '../store/package-store.ts';
import type { SyncJob } from '../sync/sync-jobs.ts';
import type { SyncLoop } from '../sync/sync-loop.ts';
import type { DownloadStats } from './download-stats.ts';
import { sendFile, sendFromMetadata, type PackageMeta } from './send-file.ts';
import type { SharedReadFiles } from './shared-files.ts';
import { canTail, tailDownload, type TailLimit } from './tail-send.ts';
import type { ZeroCopy } from './zero-copy.ts';

export interface DownloadDeps {
  store: PackageStore;
  sync: SyncLoop;
  stats: DownloadStats;
  logger: Logger;
  /** False while the operator has stopped the service: downloads answer 503. */
  isServing: () => boolean;
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
  /** sendfile(2) for complete packages (zero-copy.ts); null or absent: copy through Buffers. */
  zeroCopy?: ZeroCopy | null;
}

export interface DownloadSettings {
  /** How long a tablet may wait for an in-flight sync of an active meeting (to start, or to finish) before 503. */
  waitForSyncMs: number;
  /** Destroy a response whose client took no bytes for this long. */
  idleTimeoutMs: number;
  retryAfterSeconds: number;
  /**
   * A request for an id not active here (or a preheated package not yet confirmed) waits this long
   * at most for the node's shared status check before it is answered (default 2 s).
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
  if (!deps.isServing()) {
    return sendJson(res, 503, { error: 'service stopped by the operator' }, { 'retry-after': String(deps.settings().retryAfterSeconds) });
  }
  if (!deps.sync.isServable(meetingId)) {
    // Maybe the meeting started since our last poll, or its preheated package awaits the start's
    // check: wait (bounded) for the shared status check / the confirmation, never asking the
    // master for a package of an id it does not list as active.
    await deps.sync.settleRequest(meetingId, deps.settings().settleWaitMs ?? 2_000);
    if (res.destroyed) return;
  }
  if (!deps.sync.isServable(meetingId)) {
    const active = deps.sync.activeMeeting(meetingId);
    if (!active) {
      return sendJson(res, 404, { error: `meeting ${meetingId} is not available on this node`, field: 'id' });
    }
    const job = deps.sync.requestSync(meetingId);
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
        const outcome = limit && canTail(req) ? await tailOrWait(deps, meetingId, job, req, res) : await waitForJob(job, res, settings.waitForSyncMs);
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
  await serveStored(deps, meetingId, req, res);
}

async function serveStored(deps: DownloadDeps, meetingId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const held = deps.store.get(meetingId);
  const options = { idleTimeoutMs: deps.settings().idleTimeoutMs, onBytes: (n: number) => deps.stats.bytes(meetingId, n), zeroCopy: deps.zeroCopy ?? null };
  // HEAD and revalidations (304) need no byte of the file: answered from the in-memory manifest.
  if (held && (await sendFromMetadata(req, res, packageMeta(held, meetingId), options))) return;

  const opened = await deps.store.open(meetingId);
  if (!opened) {
    return sendJson(res, 503, { error: 'package is being replaced, retry shortly' }, { 'retry-after': '1' });
  }
  const { pkg, fd } = opened;
  const counted = req.method !== 'HEAD';
  if (counted) deps.stats.started(meetingId);
  const result = await sendFile(req, res, { fd, ...packageMeta(pkg, meetingId) }, options);
  if (counted) deps.stats.finished(meetingId, result.completed && (result.status === 200 || result.status === 206));
  if (result.abortReason === 'server-error') deps.logger.error(`serve ${meetingId}: ${result.error?.message ?? 'read error'}`);
}

function packageMeta(pkg: StoredPackage, meetingId: string): PackageMeta {
  return { size: pkg.size, sha256: pkg.sha256, lastModified: new Date(pkg.fetchedAt), filename: `meeting_${meetingId}.zip` };
}

type WaitOutcome = 'served' | 'closed' | 'settled' | 'timeout';

/**
 * Streams the job's download to the tablet as soon as it has bytes on disk. Until then (queued for
 * a download slot, or waiting for the master's first byte) waits, at most waitForSyncMs. 'settled'
 * or 'timeout' without having served: the caller serves from storage or answers 503.
 */
async function tailOrWait(deps: DownloadDeps, meetingId: string, job: SyncJob, req: IncomingMessage, res: ServerResponse): Promise<WaitOutcome> {
  const deadline = Date.now() + deps.settings().waitForSyncMs;
  for (;;) {
    if (job.state === 'running' && job.bytesWritten > 0) {
      const result = await tailDownload(req, res, job, {
        idleTimeoutMs: deps.settings().idleTimeoutMs,
        filename: `meeting_${meetingId}.zip`,
        files: deps.tailFiles,
        onStart: () => deps.stats.started(meetingId),
        onBytes: (n) => deps.stats.bytes(meetingId, n),
      });
      if (result) {
        deps.stats.finished(meetingId, result.completed);
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
async function waitForJob(job: SyncJob, res: ServerResponse, ms: number): Promise<WaitOutcome> {
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

/** The job's next progress or its end, the client leaving, or `ms` passing, whichever is first. */
function nextJobEvent(job: SyncJob, res: ServerResponse, ms: number): Promise<'progress' | 'settled' | 'closed' | 'timeout'> {
  return new Promise((resolve) => {
    const finish = (outcome: 'progress' | 'settled' | 'closed' | 'timeout') => {
      clearTimeout(timer);
      job.off('progress', onProgress);
      job.off('settled', onSettled);
      res.off('close', onClose);
      resolve(outcome);
    };
    const onProgress = () => finish('progress');
    const onSettled = () => finish('settled');
    const onClose = () => finish('closed');
    const timer = setTimeout(() => finish('timeout'), ms);
    job.on('progress', onProgress);
    job.on('settled', onSettled);
    res.on('close', onClose);
    if (res.destroyed) finish('closed');
  });
}

/** The tablets' URL on the master (which redirects here) and the reference node's alias. */
const DOWNLOAD_PATH = /^\/api\/(?:v1\/meetings\/([^/?]+)\/download-package|meetings\/([^/?]+)\/download)(?:\?|$)/;

/** The meeting id of a download URL (percent-decoded, not yet validated), or null for other URLs. */
export function downloadPathId(url: string): string | null {
  const match = DOWNLOAD_PATH.exec(url);
  if (!match) return null;
  const raw = match[1] ?? match[2] ?? '';
  try {
    return decodeURIComponent(raw);
  } catch {
    // Not decodable: handleDownload rejects it as an invalid id.
    return raw;
  }
}

/**
 * GET and HEAD of the download URLs answered on node:http directly, ahead of the Hono app: Hono
 * answers HEAD by re-dispatching it as GET and wrapping the result in a new web Response, which
 * measured 4x slower than this path (and GET about 25 % slower), and revalidation storms are what
 * tablets do at meeting start. Returns false, having done nothing, for any other request (the
 * caller hands it to the app, which still serves these URLs' OPTIONS preflight). `headers` are
 * set on every download response (CORS).
 */
export function createDownloadListener(deps: DownloadDeps, headers: Record<string, string> = {}): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || req.url === undefined) return false;
    const meetingId = downloadPathId(req.url);
    if (meetingId === null) return false;
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    handleDownload(deps, meetingId, req, res).catch((error: Error) => {
      deps.logger.error(`http ${req.method} ${req.url}: ${error.message}`);
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: 'internal error' });
    });
    return true;
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}
