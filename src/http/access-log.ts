import type { Logger } from '../log/logger.ts';
import type { DownloadStats, FinishedDownload } from './download-stats.ts';

/**
 * The access log: one INFO line per download (a tablet's, or a sibling node's, named as such)
 * that finished or was cut (HEAD and 304
 * answers are not downloads), with the facts as fields for logging.format json. Fed by the
 * download counters (DownloadStats), so every way a package is served is logged the same way.
 * Returns the unsubscribe.
 */
export function logDownloads(stats: DownloadStats, logger: Logger): () => void {
  const write = (download: FinishedDownload) => logger.info(accessLine(download), accessFields(download));
  stats.events.on('finished', write);
  return () => stats.events.off('finished', write);
}

export function accessLine(d: FinishedDownload): string {
  const seconds = (d.durationMs / 1000).toFixed(3);
  return (
    `access ${d.client ?? '-'}${d.peer ? ` (node ${d.peer})` : ''} meeting ${d.meetingId} ${d.status} ${d.bytes} bytes ${seconds} s ` +
    `${d.completed ? 'complete' : 'aborted'}${d.whileSyncing ? ' (while syncing)' : ''}`
  );
}

export function accessFields(d: FinishedDownload) {
  return {
    event: 'download',
    client: d.client,
    peer_node: d.peer ?? null,
    meeting_id: d.meetingId,
    status: d.status,
    bytes: d.bytes,
    duration_ms: d.durationMs,
    outcome: d.completed ? 'complete' : 'aborted',
    while_syncing: d.whileSyncing,
  };
}
