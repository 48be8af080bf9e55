// Public types of the reference master: options, views, stats and faults. No behaviour here.
import type { PackageDocument } from './packages.ts';

export const MEETING_STATUS = {
  notStarted: '未开始',
  active: '进行中',
  ended: '已结束',
} as const;
export type MeetingStatusWord = (typeof MEETING_STATUS)[keyof typeof MEETING_STATUS];

export interface ReferenceMasterOptions {
  /** A node vanishes from /list and /available this long after its last heartbeat. Real: 30000. */
  nodeExpiryMs?: number;
  /** Expired nodes are deleted from memory on this period (real: 30–40 s after the last beat). */
  nodeSweepIntervalMs?: number;
  /** How often the master checks whether every online node reported a new meeting as synced. */
  tokenCheckIntervalMs?: number;
  /** Extra wait after every online node reported the meeting synced. */
  tokenSettleMs?: number;
  /** The token changes at the latest this long after the meeting became active. */
  tokenMaxWaitMs?: number;
  /** Answer /meetings/status/node in the older `{"active_meeting": "<id>"}` form. */
  legacyStatus?: boolean;
  /** The tablets' URL 302-redirects to a node holding the package instead of serving it. */
  redirectToNodes?: boolean;
  /** Pace each package download to this rate; unset or 0 = as fast as the socket takes it. */
  throttleBytesPerSec?: number | null;
  /**
   * Cap the AGGREGATE rate of every package body (download-package-direct and the tablets'
   * download-package served by the master) to this many bytes/s: all downloads share one token
   * bucket, like the real master whose package stream is CPU-bound. Unset or 0 = no cap.
   */
  packageRateBytesPerSec?: number | null;
  /** Bytes per written chunk of a package body (each write becomes one HTTP chunk). */
  chunkSize?: number;
  /** "host:port" the master gives for itself in download-nodes-info; default: the request's Host. */
  advertisedAddress?: string;
  /** Parent folder of the temporary folder holding built packages; default os.tmpdir(). */
  tempDir?: string;
  /** Keep at most this many request log entries (oldest dropped). */
  requestLogLimit?: number;
  /**
   * Before a reset or cut fault, wait this long after the partial body left the socket, so the
   * client has read the headers and bytes and then sees the connection break mid-body.
   */
  faultFlushDelayMs?: number;
}

export type FaultRoute =
  | 'status'
  | 'tabletStatus'
  | 'meetingList'
  | 'package'
  | 'tabletPackage'
  | 'register'
  | 'heartbeat'
  | 'unregister'
  | 'list'
  | 'available'
  | 'nodesInfo';

export const FAULT_ROUTES: readonly FaultRoute[] = [
  'status',
  'tabletStatus',
  'meetingList',
  'package',
  'tabletPackage',
  'register',
  'heartbeat',
  'unregister',
  'list',
  'available',
  'nodesInfo',
];

export type FaultKind =
  /** Answer this status (500: starlette's plain-text page; others: `{"detail": ...}`). */
  | { kind: 'status'; code: number }
  /** 200 application/json whose body is cut in the middle of a JSON value. */
  | { kind: 'invalidJson' }
  /** 502 HTML error page of a reverse proxy. */
  | { kind: 'html' }
  /** 200 chunked application/json of this many bytes: valid JSON, one huge string inside. */
  | { kind: 'hugeBody'; bytes: number }
  /** Accept the request and never answer. */
  | { kind: 'hang' }
  /** Send headers and the first afterBytes of the normal body, then nothing, forever. */
  | { kind: 'stallBody'; afterBytes: number }
  /** Send headers and the first afterBytes of the normal body, then a TCP reset. */
  | { kind: 'resetMidBody'; afterBytes: number }
  /** Send headers and the first afterBytes of the normal body, then FIN without the 0-chunk. */
  | { kind: 'cutChunked'; afterBytes: number }
  /** 200 chunked application/zip of random bytes (default 256 KiB). */
  | { kind: 'notZip'; bytes?: number };

export type Fault = FaultKind & {
  /** Apply to the next n requests of the route only, then clear. */
  times?: number;
  /** Package routes: only requests for this meeting. */
  meetingId?: string;
};

export type BodyFault = Extract<FaultKind, { afterBytes: number }>;

/** A scheduled start: a Date, epoch milliseconds, or the master's form `YYYY-MM-DDTHH:MM` (local time). */
export type MeetingTimeInput = Date | number | string;

export interface AddMeetingInput {
  id: string;
  title: string;
  /** Default: empty. */
  intro?: string;
  /** Scheduled start; default: when the meeting was added. */
  time?: MeetingTimeInput;
  documents?: readonly PackageDocument[];
  packageSizeBytes?: number;
}

export interface MeetingDocumentView {
  /** Agenda position, 1-based: the N of `agenda_N/` in the package. */
  agenda: number;
  /** Upload uuid: a new one for every replaced or added document. */
  uploadId: string;
  name: string;
}

export interface MeetingView {
  id: string;
  title: string;
  intro: string;
  /** Scheduled start, master local time, `YYYY-MM-DDTHH:MM` (as /api/v1/meetings/ lists it). */
  time: string;
  /** The same instant in epoch milliseconds. */
  timeMs: number;
  status: MeetingStatusWord;
  active: boolean;
  /** How many times the meeting became active. */
  activations: number;
  packageSizeBytes: number | null;
  documents: MeetingDocumentView[];
  /**
   * The build the master keeps and serves: the start's build while 进行中, or (未开始) the build
   * made by the first download-package-direct. Null otherwise (ended, or nothing built yet).
   */
  package: { size: number; sha256: string; buildId: string; builtAt: number; reason: BuildReason } | null;
}

/** Why a package was built: a start, the first download of a meeting not started, or a one-off for an ended meeting. */
export type BuildReason = 'start' | 'preheat' | 'oneOff';

export interface BuildRecord {
  buildId: string;
  meetingId: string;
  reason: BuildReason;
  size: number;
  sha256: string;
  /** Build time (epoch ms): the `生成时间` of its README.txt, to the second. */
  builtAt: number;
}

export interface NodeView {
  nodeId: string;
  address: string;
  status: string;
  online: boolean;
  registeredAt: number;
  lastSeen: number;
  /** Raw active_meetings of the last heartbeat (may hold the bad entries that broke /list). */
  activeMeetings: unknown[];
  /** synced_meetings of the last heartbeat that were also in its active_meetings. */
  syncedMeetings: string[];
  /** Raw synced_meetings of the last heartbeat. */
  reportedSyncedMeetings: string[];
  /** The last heartbeat had an active meeting without a string id/title: /list answers 500. */
  breaksList: boolean;
  heartbeats: number;
  /** Raw body of the last heartbeat (extra fields included), null before the first one. */
  lastHeartbeat: unknown;
  /** The `load` field of the last heartbeat that had one. */
  load: unknown;
}

export interface DownloadCounters {
  started: number;
  completed: number;
  aborted: number;
  faulted: number;
  bytesSent: number;
}

export interface RequestLogEntry {
  method: string;
  path: string;
  route: string;
  time: number;
  status?: number;
  fault?: FaultKind['kind'];
}

export interface MasterStats {
  /** Requests per route name (admin requests under 'admin'). */
  requests: Record<string, number>;
  /** All requests except the admin API: what a node or tablet sent. */
  requestsTotal: number;
  faultsApplied: Record<string, number>;
  /** Heartbeat bodies processed (valid or breaking /list); rejected ones (422/400) excluded. */
  heartbeats: number;
  tokenChanges: number;
  packagesBuilt: number;
  /** download-package-direct, per meeting id. */
  packageDownloads: Record<string, DownloadCounters>;
  /** download-package served by the master itself (not redirected), per meeting id. */
  tabletDownloads: Record<string, DownloadCounters>;
  /** download-package redirects, per node address. */
  redirectsByNode: Record<string, number>;
  /** Body bytes of download-package-direct. */
  packageBytesSent: number;
  /** Body bytes of download-package served by the master. */
  tabletBytesSent: number;
  /** Body bytes of download-package-direct per build id (see packageBuilds for its meeting). */
  packageBytesByBuild: Record<string, number>;
  /** Every build since the last reset, oldest first. */
  packageBuilds: BuildRecord[];
  /** download-package-direct requests the client closed before the end (probes reading the beginning). */
  packageRequestsCutShort: number;
  requestLog: RequestLogEntry[];
}

export interface ReferenceMaster {
  listen(port?: number, host?: string): Promise<{ url: string; port: number }>;
  close(): Promise<void>;
  readonly url: string | null;
  addMeeting(input: AddMeetingInput): MeetingView;
  /** Builds the package, then marks the meeting 进行中 (so it is listed only once servable). */
  startMeeting(id: string): Promise<MeetingView>;
  endMeeting(id: string): Promise<MeetingView>;
  /**
   * Documents for the next build (a changed or added one gets a new upload uuid). Neither an
   * active meeting's build nor a not-started meeting's kept build is rebuilt.
   */
  setDocuments(id: string, documents: readonly PackageDocument[]): MeetingView;
  /** Moves the scheduled start (status unchanged). */
  setMeetingTime(id: string, time: MeetingTimeInput): MeetingView;
  /** Deletes the meeting and its build; downloads in progress finish. */
  deleteMeeting(id: string): Promise<void>;
  meetings(): MeetingView[];
  meeting(id: string): MeetingView | null;
  token(): string;
  nodes(): NodeView[];
  stats(): MasterStats;
  resetStats(): void;
  setFault(route: FaultRoute, fault: Fault | null): void;
  faults(): Partial<Record<FaultRoute, Fault>>;
}
