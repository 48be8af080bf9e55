import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logger.ts';
import { isValidMeetingId } from '../meeting-id.ts';
import type { PackageStore } from '../store/package-store.ts';
import type { SyncLoop } from '../sync/sync-loop.ts';
import type { DownloadStats } from './download-stats.ts';
import { sendFile } from './send-file.ts';

export interface DownloadDeps {
  store: PackageStore;
  sync: SyncLoop;
  stats: DownloadStats;
  logger: Logger;
  /** False while the operator has stopped the service: downloads answer 503. */
  isServing: () => boolean;
  settings: () => DownloadSettings;
}

export interface DownloadSettings {
  /** How long a tablet may wait for an in-flight sync of an active meeting before 503. */
  waitForSyncMs: number;
  /** Destroy a response whose client took no bytes for this long. */
  idleTimeoutMs: number;
  retryAfterSeconds: number;
}

/**
 * GET/HEAD of a meeting package, on the master's own URLs. Answers from storage when the package
 * is complete; for an active meeting still syncing, joins (or starts) the one download job and
 * waits a bounded time; for ids the master does not list as active, 404 at once.
 */
export async function handleDownload(deps: DownloadDeps, meetingId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!isValidMeetingId(meetingId)) {
    return sendJson(res, 400, { error: 'invalid meeting id', field: 'id' });
  }
  if (!deps.isServing()) {
    return sendJson(res, 503, { error: 'service stopped by the operator' }, { 'retry-after': String(deps.settings().retryAfterSeconds) });
  }
  if (!deps.sync.isServable(meetingId)) {
    const active = deps.sync.activeMeeting(meetingId);
    if (!active) {
      // Maybe the meeting started since our last poll: refresh in the background (rate-limited),
      // so the tablet's retry finds it, but answer now without touching the master.
      void deps.sync.refreshForUnknownId().catch(() => {});
      return sendJson(res, 404, { error: `meeting ${meetingId} is not available on this node`, field: 'id' });
    }
    const job = deps.sync.requestSync(meetingId);
    const settings = deps.settings();
    if (job) {
      const closed = new Promise<'closed'>((resolve) => res.once('close', () => resolve('closed')));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), settings.waitForSyncMs);
      });
      const outcome = await Promise.race([job.done.then(() => 'done' as const, () => 'failed' as const), timeout, closed]);
      clearTimeout(timer);
      if (outcome === 'closed') return;
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
  const opened = await deps.store.open(meetingId);
  if (!opened) {
    return sendJson(res, 503, { error: 'package is being replaced, retry shortly' }, { 'retry-after': '1' });
  }
  const { pkg, fd } = opened;
  const counted = req.method !== 'HEAD';
  if (counted) deps.stats.started(meetingId);
  const result = await sendFile(
    req,
    res,
    { fd, size: pkg.size, sha256: pkg.sha256, lastModified: new Date(pkg.fetchedAt), filename: `meeting_${meetingId}.zip` },
    {
      idleTimeoutMs: deps.settings().idleTimeoutMs,
      onBytes: (n) => deps.stats.bytes(meetingId, n),
    },
  );
  if (counted) deps.stats.finished(meetingId, result.completed && (result.status === 200 || result.status === 206));
  if (result.abortReason === 'server-error') deps.logger.error(`serve ${meetingId}: ${result.error?.message ?? 'read error'}`);
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
