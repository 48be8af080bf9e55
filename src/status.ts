import type { EdgeNode } from './edge-node.ts';

/**
 * The /api/status document: the reference node's fields (same names), then per-meeting detail.
 * Built from memory only: no directory walks per request.
 */
export function buildStatus(node: EdgeNode) {
  const config = node.config.current;
  const lastPoll = node.sync.lastSuccess;
  const syncing = node.jobs.inFlightIds();
  const active = node.sync.activeMeetings();
  const activeIds = new Set(active.map((m) => m.id));
  const held = node.store.list();
  const ids = [...new Set([...active.map((m) => m.id), ...held.map((p) => p.meetingId)])];
  const meetings = ids.map((id) => {
    const pkg = node.store.get(id);
    const job = node.jobs.jobs().find((j) => j.meetingId === id);
    const failure = node.jobs.failure(id);
    const serve = node.stats.peek(id);
    const state = syncing.has(id)
      ? 'syncing'
      : !activeIds.has(id)
        ? 'ended'
        : node.sync.isServable(id)
          ? 'synced'
          : failure
            ? 'failed'
            : 'active';
    return {
      id,
      title: active.find((m) => m.id === id)?.title ?? pkg?.title ?? '',
      state,
      size: pkg?.size ?? null,
      sha256: pkg?.sha256 ?? null,
      synced_at: pkg?.fetchedAt ?? null,
      progress: job && !job.settled ? { bytes: job.bytesWritten, rate: Math.round(job.rate), attempt: job.attempt, reason: job.reason } : null,
      last_error: failure ? { message: failure.message, at: new Date(failure.at).toISOString() } : null,
      downloads_completed: serve?.downloadsCompleted ?? 0,
      active_downloads: serve?.activeDownloads ?? 0,
      bytes_served: serve?.bytesServed ?? 0,
    };
  });
  const announcerState = node.announcer.state;
  const lastError = node.sync.lastError ?? announcerState.lastError;
  return {
    node_id: config.nodeId,
    running: node.serving,
    connected: node.sync.lastError === null && lastPoll !== null && announcerState.consecutiveFailures === 0,
    main_server: node.master.baseUrl,
    node_ip: node.address.replace(/:\d+$/, ''),
    node_port: node.port,
    node_address: node.address,
    start_time: new Date(node.startedAt).toISOString(),
    last_sync: lastPoll ? new Date(lastPoll.at).toISOString() : null,
    sync_status: node.sync.lastError ? 'error' : syncing.size > 0 ? 'syncing' : lastPoll ? 'ok' : 'pending',
    active_meetings: active,
    meeting_count: active.length,
    storage_usage: node.store.usedBytes(),
    token: lastPoll?.token ?? null,
    meetings,
    storage: { path: node.store.root, used: node.store.usedBytes(), max: config.storage.maxSize, packages: held.length },
    master: {
      url: node.master.baseUrl,
      reachable: node.sync.lastError === null && announcerState.consecutiveFailures === 0,
      registered: announcerState.registered,
      last_heartbeat: announcerState.lastHeartbeatAt ? new Date(announcerState.lastHeartbeatAt).toISOString() : null,
      last_error: lastError ? { message: lastError.message, at: new Date(lastError.at).toISOString() } : null,
    },
    downloads: { active: node.stats.activeDownloads, bytes_served: node.stats.totalBytesServed },
  };
}
