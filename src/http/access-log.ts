import type { Logger } from '../log/logger.ts';
import type { ServeStats, FinishedServe } from './serve-stats.ts';

/**
 * The access log: one INFO line per download (a tablet's, or a sibling node's, named as such)
 * that finished or was cut (HEAD and 304
 * answers are not downloads), with the facts as fields for logging.format json. Fed by the
 * download counters (ServeStats), so every way a package is served is logged the same way.
 * Returns the unsubscribe.
 */
export function logDownloads(stats: ServeStats, logger: Logger): () => void {
  const write = (download: FinishedServe) => logger.info(accessLine(download), accessFields(download));
  stats.events.on('finished', write);
  return () => stats.events.off('finished', write);
}

/** A request header as logged: at most this long (a client picks its own User-Agent). */
const MAX_HEADER_LOGGED = 256;

/**
 * `access <client>[ (node <id>)] <method> meeting <id> <status> <bytes> bytes <s> s complete|aborted
 * [(while syncing)] range=<"Range"|-> ua=<"User-Agent"|->`: the header values quoted as JSON strings,
 * so a quote or a space a client sends cannot forge a field.
 */
export function accessLine(d: FinishedServe): string {
  const seconds = (d.durationMs / 1000).toFixed(3);
  return (
    `access ${d.client ?? '-'}${d.peer ? ` (node ${d.peer})` : ''} ${d.method ?? 'GET'} meeting ${d.meetingId} ${d.status} ${d.bytes} bytes ${seconds} s ` +
    `${d.completed ? 'complete' : 'aborted'}${d.whileSyncing ? ' (while syncing)' : ''} range=${quoted(d.range)} ua=${quoted(d.userAgent)}`
  );
}

export function accessFields(d: FinishedServe) {
  return {
    event: 'download',
    client: d.client,
    peer_node: d.peer ?? null,
    method: d.method ?? 'GET',
    meeting_id: d.meetingId,
    status: d.status,
    bytes: d.bytes,
    duration_ms: d.durationMs,
    outcome: d.completed ? 'complete' : 'aborted',
    while_syncing: d.whileSyncing,
    range: capped(d.range),
    user_agent: capped(d.userAgent),
  };
}

function capped(value: string | null | undefined): string | null {
  if (value === undefined || value === null) return null;
  return value.length > MAX_HEADER_LOGGED ? `${value.slice(0, MAX_HEADER_LOGGED)}…` : value;
}

function quoted(value: string | null | undefined): string {
  const shown = capped(value);
  return shown === null ? '-' : JSON.stringify(shown);
}
