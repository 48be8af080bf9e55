import type { NodeConfig } from '../config/schema.ts';
import type { ServeStats } from '../http/serve-stats.ts';
import type { AnnouncerState } from '../master/announcer.ts';
import type { DiskSpace } from '../store/disk-space.ts';
import { awaitsStartCheck } from '../store/package-state.ts';
import type { PackageStore } from '../store/package-store.ts';
import { bytesServedToTablets, type PeerServeStats } from '../site/seed-serving.ts';
import type { Preheater } from '../sync/preheat.ts';
import type { QuotaGuard } from '../sync/quota-guard.ts';
import type { SiteTier } from '../site/site-tier.ts';
import type { SyncJobs } from '../sync/sync-jobs.ts';
import type { Reconciler } from '../sync/reconciler.ts';
import type { ScheduleInfo } from './lifecycle.ts';
import type { ScrubStatus } from './maintenance.ts';

/** What the running process is, beyond its rooms' own state. */
export interface NodeRuntime {
  serving: boolean;
  masterUrl: string;
  /** host:port registered with the master. */
  address: string;
  port: number;
  startedAt: number;
  version: string;
  schedule: ScheduleInfo;
  restartRequired: string[];
  /** Settings a start option overrides (nodePort: '--port'). */
  startOverrides?: Readonly<Record<string, string>>;
}

/** Everything /api/status reads, and nothing more. */
export interface StatusSources {
  config(): NodeConfig;
  sync: Pick<Reconciler, 'lastSuccess' | 'lastError' | 'lastAttemptAt' | 'activeMeetings' | 'isServable'> & Partial<Pick<Reconciler, 'probeCounters'>>;
  jobs: Pick<SyncJobs, 'inFlightIds' | 'jobs' | 'failure' | 'fetchedBytes'>;
  store: Pick<PackageStore, 'root' | 'list' | 'usedBytes'>;
  stats: Pick<ServeStats, 'peek' | 'activeDownloads' | 'totalBytesServed'>;
  quota: Pick<QuotaGuard, 'state'>;
  announcer: { readonly state: AnnouncerState };
  /** The site tier and what it served to siblings (issue 12). */
  site: Pick<SiteTier, 'enabled' | 'offReason' | 'keySet' | 'seedNow' | 'counters' | 'lastFailure' | 'lastSecurityEvent' | 'members' | 'health'>;
  peers: Pick<PeerServeStats, 'bytes' | 'requests' | 'refused' | 'busy' | 'bytesFor'>;
  /** Meetings scheduled soon and their preheat; absent: none shown. */
  preheat?: Pick<Preheater, 'upcoming' | 'counters' | 'lastScan'> & { nextScanAt(): Date | null };
  runtime(): NodeRuntime;
  /** Storage upkeep (the scrub: schedule, progress, last result); absent: null in the document. */
  maintenance?: () => { scrub: ScrubStatus };
}

const seconds = (ms: number) => ms / 1000;
const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/**
 * The /api/status document. First the reference node's fields with the reference's names and
 * types (times as Unix seconds, active_meetings as its detail objects), so its panel and scripts
 * keep working; then the detail this node adds (times as ISO strings). Built from memory only:
 * no directory walk per request; the disk figures come from a cached statfs.
 */
export function buildStatus(node: StatusSources, disk: DiskSpace | null) {
  const config = node.config();
  const runtime = node.runtime();
  const lastPoll = node.sync.lastSuccess;
  const syncing = node.jobs.inFlightIds();
  const active = node.sync.activeMeetings();
  const activeById = new Map(active.map((m) => [m.id, m]));
  const held = node.store.list();
  const heldById = new Map(held.map((p) => [p.meetingId, p]));
  const jobById = new Map(node.jobs.jobs().map((j) => [j.meetingId, j]));
  const ids = [...new Set([...activeById.keys(), ...heldById.keys()])];

  const meetings = ids.map((id) => {
    const pkg = heldById.get(id);
    const job = jobById.get(id);
    const failure = node.jobs.failure(id);
    const serve = node.stats.peek(id);
    // preheated: fetched before its meeting started, ready for the start (not served until then).
    const state = syncing.has(id)
      ? 'syncing'
      : pkg && awaitsStartCheck(pkg) && !activeById.has(id)
        ? 'preheated'
        : !activeById.has(id)
        ? 'ended'
        : node.sync.isServable(id)
          ? 'synced'
          : failure
            ? 'failed'
            : 'active';
    return {
      id,
      title: activeById.get(id)?.title ?? pkg?.title ?? '',
      state,
      active: activeById.has(id),
      size: pkg?.size ?? null,
      // A held package keeps being served while a newer one syncs (the panel says so).
      servable: node.sync.isServable(id),
      sha256: pkg?.sha256 ?? null,
      synced_at: pkg?.fetchedAt ?? null,
      // How the held package came: 'master' (synced), 'preheat' (before the start), 'confirmed' (a
      // preheat matched at the start), 'adopted' (found in storage).
      package_source: pkg?.source ?? null,
      progress:
        job && !job.settled
          ? {
              state: job.state,
              bytes: job.bytesWritten,
              // The master streams packages without a Content-Length: the size is unknown until the end.
              total: null,
              rate: Math.round(job.rate),
              attempt: job.attempt,
              reason: job.reason,
              started_at: iso(job.createdAt),
            }
          : null,
      last_error: failure ? { message: failure.message, code: failure.code, at: iso(failure.at), retry_at: iso(failure.retryAt) } : null,
      // Where the last (or running) download's bytes came from; the seed the site picks for it.
      source: job ? job.source : null,
      seed: node.site.enabled ? (node.site.seedNow(id) ?? runtime.address) : null,
      bytes_served_to_peers: node.peers.bytesFor(id),
      downloads_completed: serve?.downloadsCompleted ?? 0,
      downloads_aborted: serve?.downloadsAborted ?? 0,
      active_downloads: serve?.activeDownloads ?? 0,
      bytes_served: serve?.bytesServed ?? 0,
      last_served_at: iso(serve?.lastServedAt),
    };
  });

  // The reference listed active meetings first ("active"), then packages held for others ("synced").
  const referenceMeetings = [
    ...active.map((m) => {
      const pkg = heldById.get(m.id);
      return { id: m.id, title: m.title, sync_time: pkg ? seconds(Date.parse(pkg.fetchedAt)) : null, size: pkg?.size ?? 0, file_count: pkg ? 1 : 0, status: 'active' };
    }),
    ...held
      .filter((p) => !activeById.has(p.meetingId))
      .map((p) => ({ id: p.meetingId, title: p.title, sync_time: seconds(Date.parse(p.fetchedAt)), size: p.size, file_count: 1, status: 'synced' })),
  ];

  const announcer = node.announcer.state;
  const pollError = node.sync.lastError;
  const lastError = pollError ?? announcer.lastError;
  const reachable = lastPoll !== null && pollError === null && announcer.consecutiveFailures === 0;
  const used = node.store.usedBytes();
  const schedule = runtime.schedule;
  return {
    node_id: config.nodeId,
    running: runtime.serving,
    connected: reachable,
    main_server: runtime.masterUrl,
    node_ip: runtime.address.replace(/:\d+$/, ''),
    node_port: runtime.port,
    start_time: seconds(runtime.startedAt),
    last_sync: lastPoll ? seconds(lastPoll.at) : null,
    sync_status: !runtime.serving ? 'stopped' : pollError ? 'error' : syncing.size > 0 ? 'syncing' : lastPoll ? 'ok' : 'pending',
    active_meetings: referenceMeetings,
    meeting_count: held.length,
    storage_usage: used,

    version: runtime.version,
    node_address: runtime.address,
    uptime_seconds: Math.floor(seconds(Date.now() - runtime.startedAt)),
    token: lastPoll?.token ?? null,
    active_meeting_count: active.length,
    meetings,
    storage: {
      path: node.store.root,
      used,
      max: config.storage.maxSize,
      cleanup_threshold: config.storage.cleanupThreshold,
      packages: held.length,
      disk_total: disk?.total ?? null,
      disk_free: disk?.available ?? null,
      // Last eviction and last refused sync, so an operator sees why a package went or never came.
      quota: node.quota.state,
    },
    master: {
      url: runtime.masterUrl,
      reachable,
      registered: announcer.registered,
      last_poll: iso(lastPoll?.at),
      last_poll_attempt: iso(node.sync.lastAttemptAt),
      last_heartbeat: iso(announcer.lastHeartbeatAt),
      last_heartbeat_ok: announcer.lastHeartbeatOk,
      last_heartbeat_success: iso(announcer.lastSuccessAt),
      consecutive_failures: announcer.consecutiveFailures,
      failing_since: iso(announcer.failingSince),
      last_error: lastError ? { message: lastError.message, at: iso(lastError.at) } : null,
    },
    schedule: {
      poll: { interval_seconds: config.syncInterval, next_at: iso(schedule.nextPollAt) },
      heartbeat: { interval_seconds: config.heartbeat.interval, next_at: iso(schedule.nextHeartbeatAt) },
    },
    downloads: { active: node.stats.activeDownloads, bytes_served: node.stats.totalBytesServed },
    site: siteStatus(node, runtime, active.map((m) => m.id)),
    // Meetings not started, scheduled in the preheat window, soonest first ("time": the master's local time).
    upcoming: (node.preheat?.upcoming() ?? []).map((m) => ({
      id: m.id,
      title: m.title,
      time: m.time,
      scheduled_at: iso(m.timeMs),
      preheat: m.preheat,
      size: m.size,
      last_error: m.lastError ? { message: m.lastError.message, at: iso(m.lastError.at), retry_at: iso(m.lastError.retryAt) } : null,
    })),
    preheat: {
      enabled: config.preheat.enabled,
      schedule: config.preheat.schedule,
      hours_ahead: config.preheat.hoursAhead,
      hours_behind: config.preheat.hoursBehind,
      next_scan_at: node.preheat?.nextScanAt()?.toISOString() ?? null,
      last_scan: node.preheat?.lastScan ? { at: iso(node.preheat.lastScan.at), ok: node.preheat.lastScan.ok, error: node.preheat.lastScan.error } : null,
      counters: node.preheat?.counters ?? null,
      confirmed_at_start: node.sync.probeCounters?.preheatConfirmed ?? 0,
      discarded_at_start: node.sync.probeCounters?.preheatDiscarded ?? 0,
    },
    restart_required: runtime.restartRequired,
    start_overrides: runtime.startOverrides ?? {},
    maintenance: node.maintenance?.() ?? null,
  };
}

/** The site tier: members, the master's node list with who seeds what, bytes by source. */
function siteStatus(node: StatusSources, runtime: NodeRuntime, activeIds: string[]) {
  const view = node.site.members.view();
  const counters = node.site.counters;
  const fetched = node.jobs.fetchedBytes;
  const seedOf = (id: string) => node.site.seedNow(id) ?? runtime.address;
  const seeds = (address: string) => (node.site.enabled ? activeIds.filter((id) => seedOf(id) === address) : []);
  const listed = new Set(view.nodes.map((n) => n.address));
  const lastFailure = node.site.lastFailure;
  const lastSecurity = node.site.lastSecurityEvent;
  // Each sibling's health and key proof (never the key); this node is "self".
  const healthOf = new Map(node.site.health.view().map((m) => [m.address, m]));
  const health = (address: string) => {
    if (address === runtime.address) return { state: 'self', proof: 'self', good: null, last_answer_at: null, last_error: null };
    const m = healthOf.get(address);
    if (!m) return { state: 'unknown', proof: 'unknown', good: null, last_answer_at: null, last_error: null };
    const state = m.proof === 'refused' ? 'not-of-site' : m.healthy ? 'healthy' : m.lastProbeAt === null ? 'unknown' : 'sick';
    return { state, proof: m.proof, good: m.good, last_answer_at: iso(m.lastAnswerAt), last_error: m.lastError };
  };
  return {
    enabled: node.site.enabled,
    // Why the tier is off: 'no-key' (no site key set) or 'disabled' (peers.enabled false); null when on.
    off: node.site.enabled ? null : node.site.keySet ? 'disabled' : 'no-key',
    off_reason: node.site.offReason,
    key_set: node.site.keySet,
    self: runtime.address,
    members: view.members,
    listed_at: iso(view.listedAt),
    list_error: view.listError,
    held_out: view.heldOut.map((h) => ({ address: h.address, until: iso(h.until) })),
    nodes: [
      ...view.nodes.map((n) => ({
        node_id: n.nodeId,
        address: n.address,
        self: n.address === runtime.address,
        last_seen: n.lastSeen === null ? null : new Date(n.lastSeen * 1000).toISOString(),
        meetings: n.activeMeetings,
        seeds: seeds(n.address),
        health: health(n.address),
      })),
      // Static peers the master does not list (and this node, before the list was read).
      ...view.members
        .filter((address) => !listed.has(address))
        .map((address) => ({ node_id: null, address, self: address === runtime.address, last_seen: null, meetings: [], seeds: seeds(address), health: health(address) })),
    ],
    // Siblings that answered without proving the site key: "not of this site", never a seed.
    not_of_site: [...healthOf.values()].filter((m) => m.proof === 'refused').map((m) => m.address),
    security_events: counters.securityEvents,
    last_security_event: lastSecurity ? { node: lastSecurity.node, reason: lastSecurity.reason, at: iso(lastSecurity.at) } : null,
    handovers: counters.handovers,
    resumes: counters.resumes,
    resumed_bytes: counters.resumedBytes,
    fetched_bytes: { master: fetched.master, peer: fetched.peer },
    served_bytes: { tablet: bytesServedToTablets(node.stats, node.peers), peer: node.peers.bytes },
    peer_fetches: counters.peerFetches,
    fallbacks: counters.fallbacks,
    builds_from_seed: counters.buildsFromSeed,
    peer_requests: node.peers.requests,
    peer_refused: node.peers.refused,
    peer_busy: node.peers.busy,
    last_fallback: lastFailure ? { node: lastFailure.node, reason: lastFailure.reason, at: iso(lastFailure.at) } : null,
  };
}
