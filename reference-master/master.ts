// A stand-in for the real master (a FastAPI service) that reproduces its wire contract, quirks
// included, as written down in /work/shared/MASTER_API.md. Raw node:http on purpose: the node must be
// tested against exact wire behaviour (chunked bodies without Content-Length, bodies cut before the
// terminating chunk, TCP resets, hangs), which a framework would smooth over.
import { randomFillSync, randomUUID } from 'node:crypto';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildMeetingPackage, type BuiltPackage, type PackageDocument } from './packages.ts';

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

type BodyFault = Extract<FaultKind, { afterBytes: number }>;

export interface AddMeetingInput {
  id: string;
  title: string;
  documents?: readonly PackageDocument[];
  packageSizeBytes?: number;
}

export interface MeetingView {
  id: string;
  title: string;
  status: MeetingStatusWord;
  active: boolean;
  /** How many times the meeting became active. */
  activations: number;
  packageSizeBytes: number | null;
  /** The package served while active; null otherwise. */
  package: { size: number; sha256: string; buildId: string } | null;
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
  /** Documents for the next build; an active meeting keeps serving its current bytes. */
  setDocuments(id: string, documents: readonly PackageDocument[]): MeetingView;
  meetings(): MeetingView[];
  meeting(id: string): MeetingView | null;
  token(): string;
  nodes(): NodeView[];
  stats(): MasterStats;
  resetStats(): void;
  setFault(route: FaultRoute, fault: Fault | null): void;
  faults(): Partial<Record<FaultRoute, Fault>>;
}

interface MeetingRecord {
  id: string;
  title: string;
  status: MeetingStatusWord;
  documents: readonly PackageDocument[] | undefined;
  packageSizeBytes: number | undefined;
  pkg: BuiltPackage | null;
  activations: number;
  /** Bumped by every start/end so a start whose build finishes late knows it was overtaken. */
  generation: number;
  starting: Promise<MeetingView> | null;
}

interface NodeRecord {
  nodeId: string;
  address: string;
  status: string;
  registeredAt: number;
  lastSeen: number;
  activeMeetings: unknown[];
  syncedMeetings: string[];
  reportedSyncedMeetings: string[];
  breaksList: boolean;
  heartbeats: number;
  lastHeartbeat: unknown;
  load: unknown;
  /** Redirects handed out since the node last reported its load: spreads a burst of tablets. */
  redirectsSinceLoad: number;
  lastPicked: number;
}

interface TokenWait {
  interval: NodeJS.Timeout;
  maxWait: NodeJS.Timeout;
  settle: NodeJS.Timeout | null;
}

type RouteName =
  | 'root'
  | 'register'
  | 'unregister'
  | 'heartbeat'
  | 'list'
  | 'available'
  | 'status'
  | 'package'
  | 'tabletPackage'
  | 'nodesInfo'
  | 'admin'
  | 'notFound';

interface RouteMatch {
  route: RouteName;
  allowed: readonly string[];
  meetingId?: string;
}

type BodyChunks = () => AsyncGenerator<Buffer>;

interface PlannedResponse {
  status: number;
  headers: Record<string, string>;
  /** A Buffer goes out with Content-Length; chunks go out chunked, one HTTP chunk per write. */
  body: Buffer | BodyChunks;
}

type DeliveryOutcome = 'completed' | 'aborted' | 'faulted';

type ValidationIssue = {
  type: string;
  loc: (string | number)[];
  msg: string;
  input: unknown;
  ctx?: Record<string, unknown>;
};

type ParsedBody = { ok: true; value: Record<string, unknown> } | { ok: false; issues: ValidationIssue[] };

const GET = ['GET', 'HEAD'] as const;
const GET_ONLY = ['GET'] as const;
const POST = ['POST'] as const;
const STATIC_ROUTES: Record<string, RouteMatch> = {
  '/': { route: 'root', allowed: GET },
  '/api/v1/nodes/register': { route: 'register', allowed: POST },
  '/api/v1/nodes/unregister': { route: 'unregister', allowed: POST },
  '/api/v1/nodes/heartbeat': { route: 'heartbeat', allowed: POST },
  '/api/v1/nodes/list': { route: 'list', allowed: GET },
  '/api/v1/nodes/available': { route: 'available', allowed: GET },
  '/api/v1/meetings/status/node': { route: 'status', allowed: GET },
};
const MEETING_ROUTE = /^\/api\/v1\/meetings\/([^/]+)\/(download-package-direct|download-package|download-nodes-info)$/;
const MEETING_ROUTE_NAMES: Record<string, RouteName> = {
  'download-package-direct': 'package',
  'download-package': 'tabletPackage',
  'download-nodes-info': 'nodesInfo',
};
/**
 * Printable ASCII, so the id fits the content-disposition header. Deliberately looser than what a
 * node should accept (`..`, quotes, spaces pass): tests can make the master list hostile ids.
 */
const ADMIN_MEETING_ID = /^[\x20-\x7e]+$/;
const MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024;
const DEFAULT_NOT_ZIP_BYTES = 256 * 1024;
const FILE_READ_BYTES = 256 * 1024;

const ROOT_HTML = Buffer.from(
  '<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>无纸化会议系统</title></head>' +
    '<body><h1>无纸化会议系统</h1><p>Paperless meeting master (reference implementation)</p></body></html>',
  'utf8',
);
const PROXY_ERROR_HTML = Buffer.from(
  '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n' +
    '<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n',
  'latin1',
);

export function createReferenceMaster(options: ReferenceMasterOptions = {}): ReferenceMaster {
  return new ReferenceMasterServer(options);
}

export class ReferenceMasterServer implements ReferenceMaster {
  readonly #nodeExpiryMs: number;
  readonly #tokenCheckIntervalMs: number;
  readonly #tokenSettleMs: number;
  readonly #tokenMaxWaitMs: number;
  readonly #legacyStatus: boolean;
  readonly #redirectToNodes: boolean;
  readonly #throttleBytesPerSec: number | null;
  readonly #chunkSize: number;
  readonly #advertisedAddress: string | undefined;
  readonly #tempParent: string;
  readonly #requestLogLimit: number;
  readonly #faultFlushDelayMs: number;

  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();
  readonly #meetings = new Map<string, MeetingRecord>();
  /** Ids of active meetings in the order they became active. */
  readonly #activeOrder: string[] = [];
  readonly #nodes = new Map<string, NodeRecord>();
  readonly #tokenWaits = new Map<string, TokenWait>();
  readonly #faults = new Map<FaultRoute, Fault>();
  readonly #builds = new Set<Promise<unknown>>();
  readonly #shutdown = new AbortController();
  readonly #sweepTimer: NodeJS.Timeout;
  #stats: MasterStats = emptyStats();
  #token = randomUUID();
  #workDir: Promise<string> | null = null;
  #listenAddress: { host: string; port: number } | null = null;
  #closing: Promise<void> | null = null;
  #pickCounter = 0;

  constructor(options: ReferenceMasterOptions) {
    this.#nodeExpiryMs = options.nodeExpiryMs ?? 30_000;
    this.#tokenCheckIntervalMs = options.tokenCheckIntervalMs ?? 5_000;
    this.#tokenSettleMs = options.tokenSettleMs ?? 3_000;
    this.#tokenMaxWaitMs = options.tokenMaxWaitMs ?? 300_000;
    this.#legacyStatus = options.legacyStatus ?? false;
    this.#redirectToNodes = options.redirectToNodes ?? false;
    this.#throttleBytesPerSec = options.throttleBytesPerSec ? options.throttleBytesPerSec : null;
    this.#chunkSize = Math.max(1, Math.floor(options.chunkSize ?? 16 * 1024));
    this.#advertisedAddress = options.advertisedAddress;
    this.#tempParent = options.tempDir ?? tmpdir();
    this.#requestLogLimit = options.requestLogLimit ?? 10_000;
    this.#faultFlushDelayMs = options.faultFlushDelayMs ?? 50;

    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => this.#failResponse(res, error));
    });
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    // Hanging and stalling faults keep responses open for as long as the client waits.
    this.#server.requestTimeout = 0;
    const sweepMs = options.nodeSweepIntervalMs ?? Math.max(1, Math.round(this.#nodeExpiryMs / 3));
    this.#sweepTimer = setInterval(() => this.#sweepNodes(), sweepMs);
    this.#sweepTimer.unref();
  }

  get url(): string | null {
    if (!this.#listenAddress) return null;
    return `http://${urlHost(this.#listenAddress.host)}:${this.#listenAddress.port}`;
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<{ url: string; port: number }> {
    if (this.#closing) throw new Error('reference master is closed');
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    this.#listenAddress = { host, port: address.port };
    return { url: this.url ?? '', port: address.port };
  }

  close(): Promise<void> {
    this.#closing ??= this.#closeNow();
    return this.#closing;
  }

  async #closeNow(): Promise<void> {
    clearInterval(this.#sweepTimer);
    for (const id of [...this.#tokenWaits.keys()]) this.#cancelTokenWait(id);
    this.#shutdown.abort();
    const serverClosed = this.#server.listening
      ? new Promise<void>((resolve) => this.#server.close(() => resolve()))
      : Promise.resolve();
    for (const socket of this.#sockets) socket.destroy();
    this.#server.closeAllConnections();
    await serverClosed;
    await Promise.allSettled([...this.#builds]);
    if (this.#workDir) {
      const dir = await this.#workDir.catch(() => null);
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }

  // ---- meetings -------------------------------------------------------------------------------

  addMeeting(input: AddMeetingInput): MeetingView {
    if (typeof input.id !== 'string' || !ADMIN_MEETING_ID.test(input.id) || input.id.length > 200) {
      throw new Error(`invalid meeting id: ${JSON.stringify(input.id)}`);
    }
    if (typeof input.title !== 'string') throw new Error('meeting title must be a string');
    if (this.#meetings.has(input.id)) throw new Error(`meeting ${input.id} already exists`);
    const record: MeetingRecord = {
      id: input.id,
      title: input.title,
      status: MEETING_STATUS.notStarted,
      documents: input.documents,
      packageSizeBytes: input.packageSizeBytes,
      pkg: null,
      activations: 0,
      generation: 0,
      starting: null,
    };
    this.#meetings.set(record.id, record);
    return meetingView(record);
  }

  startMeeting(id: string): Promise<MeetingView> {
    const meeting = this.#meetingOrThrow(id);
    if (meeting.status === MEETING_STATUS.active) return Promise.resolve(meetingView(meeting));
    meeting.starting ??= this.#activate(meeting).finally(() => {
      meeting.starting = null;
    });
    return meeting.starting;
  }

  async #activate(meeting: MeetingRecord): Promise<MeetingView> {
    if (this.#closing) throw new Error('reference master is closed');
    const generation = ++meeting.generation;
    const pkg = await this.#build(meeting);
    if (meeting.generation !== generation || this.#closing) {
      await rm(pkg.path, { force: true });
      return meetingView(meeting);
    }
    meeting.pkg = pkg;
    meeting.status = MEETING_STATUS.active;
    meeting.activations += 1;
    this.#activeOrder.push(meeting.id);
    this.#scheduleTokenChange(meeting.id);
    return meetingView(meeting);
  }

  async endMeeting(id: string): Promise<MeetingView> {
    const meeting = this.#meetingOrThrow(id);
    meeting.generation += 1;
    meeting.status = MEETING_STATUS.ended;
    const index = this.#activeOrder.indexOf(id);
    if (index >= 0) this.#activeOrder.splice(index, 1);
    this.#cancelTokenWait(id);
    const pkg = meeting.pkg;
    meeting.pkg = null;
    // Downloads in progress keep their open file handle; unlinking does not cut them.
    if (pkg) await rm(pkg.path, { force: true });
    return meetingView(meeting);
  }

  setDocuments(id: string, documents: readonly PackageDocument[]): MeetingView {
    const meeting = this.#meetingOrThrow(id);
    meeting.documents = documents;
    return meetingView(meeting);
  }

  meetings(): MeetingView[] {
    return [...this.#meetings.values()].map(meetingView);
  }

  meeting(id: string): MeetingView | null {
    const meeting = this.#meetings.get(id);
    return meeting ? meetingView(meeting) : null;
  }

  #meetingOrThrow(id: string): MeetingRecord {
    const meeting = this.#meetings.get(id);
    if (!meeting) throw new Error(`meeting ${id} does not exist`);
    return meeting;
  }

  async #build(meeting: MeetingRecord): Promise<BuiltPackage> {
    const work = (async () => {
      this.#workDir ??= mkdtemp(join(this.#tempParent, 'reference-master-'));
      const dir = await this.#workDir;
      const pkg = await buildMeetingPackage({
        dir,
        meetingId: meeting.id,
        title: meeting.title,
        ...(meeting.documents ? { documents: meeting.documents } : {}),
        ...(meeting.packageSizeBytes ? { packageSizeBytes: meeting.packageSizeBytes } : {}),
        signal: this.#shutdown.signal,
      });
      this.#stats.packagesBuilt += 1;
      return pkg;
    })();
    this.#builds.add(work);
    try {
      return await work;
    } finally {
      this.#builds.delete(work);
    }
  }

  // ---- token ----------------------------------------------------------------------------------

  token(): string {
    return this.#token;
  }

  #scheduleTokenChange(meetingId: string): void {
    this.#cancelTokenWait(meetingId);
    const change = () => {
      this.#cancelTokenWait(meetingId);
      this.#token = randomUUID();
      this.#stats.tokenChanges += 1;
    };
    const wait: TokenWait = {
      interval: setInterval(() => {
        if (wait.settle || !this.#allOnlineNodesSynced(meetingId)) return;
        clearInterval(wait.interval);
        wait.settle = setTimeout(change, this.#tokenSettleMs);
      }, this.#tokenCheckIntervalMs),
      maxWait: setTimeout(change, this.#tokenMaxWaitMs),
      settle: null,
    };
    this.#tokenWaits.set(meetingId, wait);
  }

  #cancelTokenWait(meetingId: string): void {
    const wait = this.#tokenWaits.get(meetingId);
    if (!wait) return;
    clearInterval(wait.interval);
    clearTimeout(wait.maxWait);
    if (wait.settle) clearTimeout(wait.settle);
    this.#tokenWaits.delete(meetingId);
  }

  #allOnlineNodesSynced(meetingId: string): boolean {
    const now = Date.now();
    for (const node of this.#nodes.values()) {
      if (this.#isOnline(node, now) && !node.syncedMeetings.includes(meetingId)) return false;
    }
    return true;
  }

  // ---- nodes ----------------------------------------------------------------------------------

  nodes(): NodeView[] {
    const now = Date.now();
    return [...this.#nodes.values()].map((node) => ({
      nodeId: node.nodeId,
      address: node.address,
      status: node.status,
      online: this.#isOnline(node, now),
      registeredAt: node.registeredAt,
      lastSeen: node.lastSeen,
      activeMeetings: structuredClone(node.activeMeetings),
      syncedMeetings: [...node.syncedMeetings],
      reportedSyncedMeetings: [...node.reportedSyncedMeetings],
      breaksList: node.breaksList,
      heartbeats: node.heartbeats,
      lastHeartbeat: structuredClone(node.lastHeartbeat),
      load: structuredClone(node.load),
    }));
  }

  #isOnline(node: NodeRecord, now: number): boolean {
    return now - node.lastSeen < this.#nodeExpiryMs;
  }

  #onlineNodes(): NodeRecord[] {
    const now = Date.now();
    return [...this.#nodes.values()].filter((node) => this.#isOnline(node, now));
  }

  #sweepNodes(): void {
    const now = Date.now();
    for (const [id, node] of this.#nodes) {
      if (!this.#isOnline(node, now)) this.#nodes.delete(id);
    }
  }

  #registerNode(nodeId: string, address: string, status: string): NodeRecord {
    const now = Date.now();
    const node: NodeRecord = {
      nodeId,
      address,
      status,
      registeredAt: now,
      lastSeen: now,
      activeMeetings: [],
      syncedMeetings: [],
      reportedSyncedMeetings: [],
      breaksList: false,
      heartbeats: 0,
      lastHeartbeat: null,
      load: undefined,
      redirectsSinceLoad: 0,
      lastPicked: 0,
    };
    this.#nodes.set(nodeId, node);
    return node;
  }

  // ---- faults and stats -----------------------------------------------------------------------

  setFault(route: FaultRoute, fault: Fault | null): void {
    if (!FAULT_ROUTES.includes(route)) throw new Error(`unknown fault route: ${String(route)}`);
    if (fault === null) {
      this.#faults.delete(route);
      return;
    }
    const problem = faultProblem(fault);
    if (problem) throw new Error(`invalid fault: ${problem}`);
    this.#faults.set(route, structuredClone(fault));
  }

  faults(): Partial<Record<FaultRoute, Fault>> {
    return Object.fromEntries(structuredClone([...this.#faults])) as Partial<Record<FaultRoute, Fault>>;
  }

  #takeFault(route: RouteName, meetingId: string | undefined): Fault | null {
    if (!isFaultRoute(route)) return null;
    const fault = this.#faults.get(route);
    if (!fault) return null;
    if (fault.meetingId !== undefined && fault.meetingId !== meetingId) return null;
    if (fault.times !== undefined) {
      fault.times -= 1;
      if (fault.times <= 0) this.#faults.delete(route);
    }
    this.#stats.faultsApplied[route] = (this.#stats.faultsApplied[route] ?? 0) + 1;
    return fault;
  }

  stats(): MasterStats {
    return structuredClone(this.#stats);
  }

  resetStats(): void {
    this.#stats = emptyStats();
  }

  #downloadCounters(kind: 'package' | 'tabletPackage', meetingId: string): DownloadCounters {
    const table = kind === 'package' ? this.#stats.packageDownloads : this.#stats.tabletDownloads;
    let counters = table[meetingId];
    if (!counters) {
      counters = { started: 0, completed: 0, aborted: 0, faulted: 0, bytesSent: 0 };
      table[meetingId] = counters;
    }
    return counters;
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // uvicorn sends a lowercase `date`; node's automatic one would be `Date`.
    res.sendDate = false;
    const method = req.method ?? 'GET';
    const rawPath = req.url ?? '/';
    const pathname = rawPath.split('?')[0] ?? '/';
    const match = matchRoute(pathname);

    const entry: RequestLogEntry = { method, path: rawPath, route: match?.route ?? 'notFound', time: Date.now() };
    this.#record(entry);
    res.once('finish', () => {
      entry.status = res.statusCode;
    });
    res.once('close', () => {
      entry.status ??= res.headersSent ? res.statusCode : undefined;
    });

    const rawBody = method === 'POST' || method === 'PUT' || method === 'PATCH' ? await readBody(req) : Buffer.alloc(0);
    if (rawBody === null) {
      await this.#deliver(req, res, json(413, { detail: 'Request body too large' }));
      return;
    }

    if (match?.route === 'admin') {
      await this.#handleAdmin(req, res, method, pathname, rawBody);
      return;
    }
    if (!match) {
      const withoutSlash = pathname.length > 1 && pathname.endsWith('/') ? pathname.replace(/\/+$/, '') : null;
      if (withoutSlash && matchRoute(withoutSlash)) {
        const query = rawPath.slice(pathname.length);
        const host = req.headers.host ?? this.#masterAddress(req);
        await this.#deliver(req, res, {
          status: 307,
          headers: { location: `http://${host}${withoutSlash}${query}` },
          body: Buffer.alloc(0),
        });
        return;
      }
      await this.#deliver(req, res, json(404, { detail: 'Not Found' }));
      return;
    }
    if (!match.allowed.includes(method)) {
      await this.#deliver(req, res, {
        ...json(405, { detail: 'Method Not Allowed' }),
        headers: { allow: match.allowed.join(', '), 'content-type': 'application/json' },
      });
      return;
    }

    // Faults act at the front door: a short-circuiting fault answers before the route runs (no
    // registry change); a body fault lets the route run, then breaks its response mid-body.
    const fault = this.#takeFault(match.route, match.meetingId);
    let bodyFault: BodyFault | undefined;
    if (fault) {
      entry.fault = fault.kind;
      if (isBodyFault(fault)) {
        bodyFault = fault;
      } else if (fault.kind === 'hang') {
        await closed(res);
        return;
      } else {
        await this.#deliver(req, res, faultResponse(fault, match.meetingId ?? 'm1'));
        return;
      }
    }

    switch (match.route) {
      case 'root':
        await this.#deliver(req, res, {
          status: 200,
          headers: { 'content-type': 'text/html; charset=utf-8' },
          body: ROOT_HTML,
        }, bodyFault);
        return;
      case 'register':
        await this.#deliver(req, res, this.#onRegister(req, rawBody), bodyFault);
        return;
      case 'unregister':
        await this.#deliver(req, res, this.#onUnregister(req, rawBody), bodyFault);
        return;
      case 'heartbeat':
        await this.#deliver(req, res, this.#onHeartbeat(req, rawBody), bodyFault);
        return;
      case 'list':
        await this.#deliver(req, res, this.#onList(), bodyFault);
        return;
      case 'available': {
        const addresses = this.#onlineNodes().map((node) => node.address);
        await this.#deliver(req, res, json(200, { count: addresses.length, nodes: addresses }), bodyFault);
        return;
      }
      case 'status':
        await this.#deliver(req, res, this.#onStatus(), bodyFault);
        return;
      case 'nodesInfo':
        await this.#deliver(req, res, this.#onNodesInfo(req, match.meetingId ?? ''), bodyFault);
        return;
      case 'package':
      case 'tabletPackage':
        await this.#onPackage(req, res, match.route, match.meetingId ?? '', bodyFault);
        return;
      case 'notFound':
        return;
    }
  }

  #record(entry: RequestLogEntry): void {
    const stats = this.#stats;
    stats.requests[entry.route] = (stats.requests[entry.route] ?? 0) + 1;
    if (entry.route === 'admin') return;
    stats.requestsTotal += 1;
    stats.requestLog.push(entry);
    if (stats.requestLog.length > this.#requestLogLimit) {
      stats.requestLog.splice(0, stats.requestLog.length - this.#requestLogLimit);
    }
  }

  #failResponse(res: ServerResponse, error: unknown): void {
    if (this.#closing || res.destroyed) return;
    if (res.headersSent) {
      res.destroy(error instanceof Error ? error : undefined);
      return;
    }
    res.writeHead(500, {
      date: new Date().toUTCString(),
      server: 'uvicorn',
      'content-length': '21',
      'content-type': 'text/plain; charset=utf-8',
    });
    res.end('Internal Server Error');
  }

  #onRegister(req: IncomingMessage, rawBody: Buffer): PlannedResponse {
    const parsed = parseJsonBody(req, rawBody);
    if (!parsed.ok) return validationError(parsed.issues);
    const body = parsed.value;
    const issues = [
      ...fieldIssues(body, 'node_id', 'string', true),
      ...fieldIssues(body, 'address', 'string', true),
      ...fieldIssues(body, 'status', 'string', true),
    ];
    if (issues.length) return validationError(issues);
    const nodeId = body['node_id'] as string;
    const address = body['address'] as string;
    if (!nodeId || !address) return json(400, { detail: 'Invalid node data' });
    this.#registerNode(nodeId, address, body['status'] as string);
    return json(200, { status: 'success', message: `Node ${nodeId} registered` });
  }

  #onUnregister(req: IncomingMessage, rawBody: Buffer): PlannedResponse {
    const parsed = parseJsonBody(req, rawBody);
    if (!parsed.ok) return validationError(parsed.issues);
    const issues = fieldIssues(parsed.value, 'node_id', 'string', true);
    if (issues.length) return validationError(issues);
    const nodeId = parsed.value['node_id'] as string;
    if (!this.#nodes.delete(nodeId)) return json(404, { detail: `Node ${nodeId} not found` });
    return json(200, { status: 'success', message: `Node ${nodeId} unregistered` });
  }

  #onHeartbeat(req: IncomingMessage, rawBody: Buffer): PlannedResponse {
    const parsed = parseJsonBody(req, rawBody);
    if (!parsed.ok) return validationError(parsed.issues);
    const body = parsed.value;
    const issues = [
      ...fieldIssues(body, 'node_id', 'string', true),
      ...fieldIssues(body, 'address', 'string', true),
      ...fieldIssues(body, 'status', 'string', false),
      ...fieldIssues(body, 'active_meetings', 'list', false),
      ...fieldIssues(body, 'synced_meetings', 'list', false),
    ];
    const activeMeetings = Array.isArray(body['active_meetings']) ? (body['active_meetings'] as unknown[]) : [];
    const reportedSynced = Array.isArray(body['synced_meetings']) ? (body['synced_meetings'] as unknown[]) : [];
    activeMeetings.forEach((item, index) => {
      if (!isPlainObject(item)) {
        issues.push({ type: 'dict_type', loc: ['body', 'active_meetings', index], msg: 'Input should be a valid dictionary', input: item });
      }
    });
    reportedSynced.forEach((item, index) => {
      if (typeof item !== 'string') {
        issues.push({ type: 'string_type', loc: ['body', 'synced_meetings', index], msg: 'Input should be a valid string', input: item });
      }
    });
    if (issues.length) return validationError(issues);
    const nodeId = body['node_id'] as string;
    const address = body['address'] as string;
    if (!nodeId || !address) return json(400, { detail: 'Invalid node data' });

    const status = typeof body['status'] === 'string' ? body['status'] : 'online';
    // An unknown node (e.g. after a master restart) is silently registered again.
    const node = this.#nodes.get(nodeId) ?? this.#registerNode(nodeId, address, status);
    const now = Date.now();
    node.address = address;
    node.status = status;
    node.lastSeen = now;
    node.heartbeats += 1;
    node.lastHeartbeat = body;
    if (body['load'] !== undefined) {
      node.load = body['load'];
      if (isPlainObject(body['load']) && typeof body['load']['activeDownloads'] === 'number') node.redirectsSinceLoad = 0;
    }
    node.activeMeetings = activeMeetings;
    node.reportedSyncedMeetings = reportedSynced as string[];
    this.#stats.heartbeats += 1;

    // The real master stores the beat, then fails on an entry without a string title; the stored
    // entry keeps failing /list until this node beats validly or expires.
    const broken = activeMeetings.some((item) => {
      const meeting = item as Record<string, unknown>;
      return typeof meeting['id'] !== 'string' || typeof meeting['title'] !== 'string';
    });
    node.breaksList = broken;
    if (broken) {
      node.syncedMeetings = [];
      return internalServerError();
    }
    const activeIds = new Set(activeMeetings.map((item) => (item as Record<string, unknown>)['id'] as string));
    node.syncedMeetings = [...new Set(node.reportedSyncedMeetings)].filter((id) => activeIds.has(id));
    return json(200, { status: 'success', timestamp: pythonTimestamp() });
  }

  #onList(): PlannedResponse {
    const now = Date.now();
    const items: Record<string, unknown>[] = [];
    for (const node of this.#onlineNodes()) {
      if (node.breaksList) return internalServerError();
      const item: Record<string, unknown> = {
        node_id: node.nodeId,
        address: node.address,
        status: node.status,
        last_seen: pythonFloat(node.lastSeen / 1000),
        uptime: pythonFloat((now - node.registeredAt) / 1000),
      };
      const active = node.activeMeetings as { id: string; title: string }[];
      if (active.length > 0) {
        item['active_meeting'] = active[0]?.id;
        item['active_meetings'] = active.map(({ id, title }) => ({ id, title }));
      }
      items.push(item);
    }
    return json(200, items);
  }

  #onStatus(): PlannedResponse {
    const active = this.#activeOrder.flatMap((id) => {
      const meeting = this.#meetings.get(id);
      return meeting ? [{ id: meeting.id, title: meeting.title }] : [];
    });
    if (this.#legacyStatus) return json(200, { active_meeting: active[0]?.id ?? null });
    return json(200, { id: this.#token, active_meetings: active, timestamp: pythonTimestamp() });
  }

  #onNodesInfo(req: IncomingMessage, meetingId: string): PlannedResponse {
    const meeting = this.#meetings.get(meetingId);
    if (!meeting) return json(404, { detail: `会议 ${meetingId} 不存在` });
    if (meeting.status !== MEETING_STATUS.active) return json(404, { detail: `会议 ${meetingId} 未在进行中` });
    const path = `/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package`;
    const master = this.#masterAddress(req);
    return json(200, [
      { ip: master, download_url: `http://${master}${path}` },
      ...this.#onlineNodes().map((node) => ({ ip: node.address, download_url: `http://${node.address}${path}` })),
    ]);
  }

  #masterAddress(req: IncomingMessage): string {
    if (this.#advertisedAddress) return this.#advertisedAddress;
    if (req.headers.host) return req.headers.host;
    const listen = this.#listenAddress;
    return listen ? `${urlHost(listen.host)}:${listen.port}` : '127.0.0.1';
  }

  async #onPackage(
    req: IncomingMessage,
    res: ServerResponse,
    route: 'package' | 'tabletPackage',
    meetingId: string,
    bodyFault: BodyFault | undefined,
  ): Promise<void> {
    const meeting = this.#meetings.get(meetingId);
    if (!meeting) {
      await this.#deliver(req, res, json(404, { detail: `会议 ${meetingId} 不存在` }), bodyFault);
      return;
    }
    if (route === 'tabletPackage' && this.#redirectToNodes && meeting.status === MEETING_STATUS.active) {
      const node = this.#pickNode(meetingId);
      if (node) {
        this.#stats.redirectsByNode[node.address] = (this.#stats.redirectsByNode[node.address] ?? 0) + 1;
        await this.#deliver(req, res, {
          status: 302,
          headers: { location: `http://${node.address}/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package` },
          body: Buffer.alloc(0),
        }, bodyFault);
        return;
      }
    }

    const source = await this.#openPackage(meeting);
    const counters = this.#downloadCounters(route, meetingId);
    counters.started += 1;
    try {
      const outcome = await this.#deliver(
        req,
        res,
        {
          status: 200,
          headers: {
            'content-type': 'application/zip',
            'content-disposition': `attachment; filename="meeting_${meetingId}_pdfs.zip"`,
          },
          body: () => fileChunks(source.handle, this.#chunkSize),
        },
        bodyFault,
        {
          throttle: this.#throttleBytesPerSec,
          onBytes: (n) => {
            counters.bytesSent += n;
            if (route === 'package') this.#stats.packageBytesSent += n;
            else this.#stats.tabletBytesSent += n;
          },
        },
      );
      counters[outcome] += 1;
    } finally {
      await source.handle.close().catch(() => undefined);
      if (source.temporary) await rm(source.path, { force: true });
    }
  }

  /** The active package, or (not active, like the real master) a freshly built one-off zip. */
  async #openPackage(meeting: MeetingRecord): Promise<{ handle: FileHandle; path: string; temporary: boolean }> {
    const pkg = meeting.status === MEETING_STATUS.active ? meeting.pkg : null;
    if (pkg) {
      try {
        return { handle: await open(pkg.path, 'r'), path: pkg.path, temporary: false };
      } catch (error) {
        // Ended between lookup and open: the meeting is no longer active, so rebuild like below.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    const built = await this.#build(meeting);
    try {
      return { handle: await open(built.path, 'r'), path: built.path, temporary: true };
    } catch (error) {
      await rm(built.path, { force: true });
      throw error;
    }
  }

  /** Least busy node holding the package: reported activeDownloads plus redirects since. */
  #pickNode(meetingId: string): NodeRecord | null {
    let best: NodeRecord | null = null;
    let bestScore = Infinity;
    for (const node of this.#onlineNodes()) {
      if (node.breaksList || !node.syncedMeetings.includes(meetingId)) continue;
      const reported = isPlainObject(node.load) && typeof node.load['activeDownloads'] === 'number'
        ? node.load['activeDownloads']
        : 0;
      const score = reported + node.redirectsSinceLoad;
      if (score < bestScore || (score === bestScore && best && node.lastPicked < best.lastPicked)) {
        best = node;
        bestScore = score;
      }
    }
    if (best) {
      best.redirectsSinceLoad += 1;
      best.lastPicked = ++this.#pickCounter;
    }
    return best;
  }

  async #handleAdmin(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    pathname: string,
    rawBody: Buffer,
  ): Promise<void> {
    const parts = pathname.split('/').filter(Boolean).map(safeDecode);
    const [, resource, id, action] = parts;
    const body = (): Record<string, unknown> | null => {
      if (rawBody.length === 0) return {};
      try {
        const value: unknown = JSON.parse(rawBody.toString('utf8'));
        return isPlainObject(value) ? value : null;
      } catch {
        return null;
      }
    };
    const reply = (status: number, value: unknown) => this.#deliver(req, res, json(status, value));
    const fail = (status: number, message: string) => reply(status, { detail: message });

    try {
      if (resource === 'meetings' && parts.length === 2) {
        if (method === 'GET') return void (await reply(200, this.meetings()));
        if (method !== 'POST') return void (await fail(405, 'Method Not Allowed'));
        const input = body();
        if (!input || typeof input['id'] !== 'string' || typeof input['title'] !== 'string') {
          return void (await fail(400, 'expected {"id": string, "title": string, "packageSizeBytes"?: number}'));
        }
        if (this.#meetings.has(input['id'])) return void (await fail(409, `meeting ${input['id']} already exists`));
        const documents = parseAdminDocuments(input['documents']);
        if (documents === null) return void (await fail(400, 'documents must be [{"name": string, "content"?: string}]'));
        const size = input['packageSizeBytes'];
        if (size !== undefined && (typeof size !== 'number' || !Number.isFinite(size) || size < 0)) {
          return void (await fail(400, 'packageSizeBytes must be a non-negative number'));
        }
        const view = this.addMeeting({
          id: input['id'],
          title: input['title'],
          ...(documents ? { documents } : {}),
          ...(typeof size === 'number' ? { packageSizeBytes: size } : {}),
        });
        return void (await reply(201, view));
      }
      if (resource === 'meetings' && id !== undefined && parts.length === 4 && (action === 'start' || action === 'end')) {
        if (method !== 'POST') return void (await fail(405, 'Method Not Allowed'));
        if (!this.#meetings.has(id)) return void (await fail(404, `meeting ${id} does not exist`));
        const view = action === 'start' ? await this.startMeeting(id) : await this.endMeeting(id);
        return void (await reply(200, view));
      }
      if (resource === 'stats' && parts.length === 2 && method === 'GET') return void (await reply(200, this.stats()));
      if (resource === 'stats' && id === 'reset' && parts.length === 3 && method === 'POST') {
        this.resetStats();
        return void (await reply(200, { ok: true }));
      }
      if (resource === 'nodes' && parts.length === 2 && method === 'GET') return void (await reply(200, this.nodes()));
      if (resource === 'token' && parts.length === 2 && method === 'GET') return void (await reply(200, { token: this.token() }));
      if (resource === 'faults' && parts.length === 2) {
        if (method === 'GET') return void (await reply(200, this.faults()));
        if (method !== 'POST') return void (await fail(405, 'Method Not Allowed'));
        const input = body();
        const route = input?.['route'];
        if (!input || typeof route !== 'string' || !isFaultRoute(route)) {
          return void (await fail(400, `route must be one of ${FAULT_ROUTES.join(', ')}`));
        }
        const fault = input['fault'] ?? null;
        if (fault !== null && (!isPlainObject(fault) || faultProblem(fault as Fault))) {
          return void (await fail(400, `invalid fault: ${faultProblem(fault as Fault) ?? 'not an object'}`));
        }
        this.setFault(route, fault as Fault | null);
        return void (await reply(200, this.faults()));
      }
      await fail(404, 'Not Found');
    } catch (error) {
      await fail(500, error instanceof Error ? error.message : String(error));
    }
  }

  /**
   * Writes a planned response. A body fault cuts it after `afterBytes` body bytes (or after the
   * whole body when it is shorter, which for a chunked body still omits the terminator).
   */
  async #deliver(
    req: IncomingMessage,
    res: ServerResponse,
    plan: PlannedResponse,
    fault?: BodyFault,
    options: { throttle?: number | null; onBytes?: (bytes: number) => void } = {},
  ): Promise<DeliveryOutcome> {
    if (res.destroyed) return 'aborted';
    const headers: Record<string, string> = { date: new Date().toUTCString(), server: 'uvicorn', ...plan.headers };
    const chunked = typeof plan.body === 'function';
    if (typeof plan.body !== 'function') headers['content-length'] = String(plan.body.length);
    else if (req.httpVersion === '1.1') headers['transfer-encoding'] = 'chunked';
    res.writeHead(plan.status, headers);

    if (req.method === 'HEAD' || (!fault && !chunked)) {
      res.end(req.method === 'HEAD' ? undefined : plan.body);
      if (req.method !== 'HEAD' && Buffer.isBuffer(plan.body)) options.onBytes?.(plan.body.length);
      return (await finished(res)) ? 'completed' : 'aborted';
    }

    const chunks = typeof plan.body === 'function' ? plan.body() : bufferChunks(plan.body, this.#chunkSize);
    const rate = options.throttle ?? null;
    const startedAt = performance.now();
    let sent = 0;
    try {
      for await (const chunk of chunks) {
        if (res.destroyed) return 'aborted';
        if (fault && sent + chunk.length >= fault.afterBytes) {
          const piece = chunk.subarray(0, fault.afterBytes - sent);
          if (piece.length > 0) {
            res.write(piece);
            options.onBytes?.(piece.length);
          }
          await this.#applyBodyFault(res, fault);
          return 'faulted';
        }
        sent += chunk.length;
        options.onBytes?.(chunk.length);
        if (!res.write(chunk) && !(await drained(res))) return 'aborted';
        if (rate) {
          const delay = startedAt + (sent / rate) * 1000 - performance.now();
          if (delay >= 1) await sleep(delay);
        }
      }
    } catch (error) {
      if (res.destroyed) return 'aborted';
      throw error;
    }
    if (fault) {
      await this.#applyBodyFault(res, fault);
      return 'faulted';
    }
    if (res.destroyed) return 'aborted';
    res.end();
    return (await finished(res)) ? 'completed' : 'aborted';
  }

  async #applyBodyFault(res: ServerResponse, fault: BodyFault): Promise<void> {
    res.flushHeaders();
    const socket = res.socket;
    if (fault.kind === 'stallBody' || !socket) {
      await closed(res);
      return;
    }
    await writtenOut(res, socket);
    await sleep(this.#faultFlushDelayMs);
    if (socket.destroyed) return;
    if (fault.kind === 'resetMidBody') {
      socket.resetAndDestroy();
      return;
    }
    // FIN without the terminating 0-chunk; destroy later in case the client keeps its half open.
    socket.end();
    setTimeout(() => socket.destroy(), 1_000).unref();
    await closed(res);
  }
}

// ---- helpers --------------------------------------------------------------------------------

function emptyStats(): MasterStats {
  return {
    requests: {},
    requestsTotal: 0,
    faultsApplied: {},
    heartbeats: 0,
    tokenChanges: 0,
    packagesBuilt: 0,
    packageDownloads: {},
    tabletDownloads: {},
    redirectsByNode: {},
    packageBytesSent: 0,
    tabletBytesSent: 0,
    requestLog: [],
  };
}

function meetingView(meeting: MeetingRecord): MeetingView {
  return {
    id: meeting.id,
    title: meeting.title,
    status: meeting.status,
    active: meeting.status === MEETING_STATUS.active,
    activations: meeting.activations,
    packageSizeBytes: meeting.packageSizeBytes ?? null,
    package: meeting.pkg ? { size: meeting.pkg.size, sha256: meeting.pkg.sha256, buildId: meeting.pkg.buildId } : null,
  };
}

function matchRoute(pathname: string): RouteMatch | null {
  const fixed = STATIC_ROUTES[pathname];
  if (fixed) return fixed;
  if (pathname.startsWith('/admin/')) return { route: 'admin', allowed: ['GET', 'POST'] };
  const meetingRoute = MEETING_ROUTE.exec(pathname);
  if (meetingRoute) {
    const route = MEETING_ROUTE_NAMES[meetingRoute[2] ?? ''] ?? 'notFound';
    // HEAD is refused on the package routes (observed 405), unlike the other GET routes.
    const allowed = route === 'nodesInfo' ? GET : GET_ONLY;
    return { route, allowed, meetingId: safeDecode(meetingRoute[1] ?? '') };
  }
  return null;
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function isFaultRoute(route: string): route is FaultRoute {
  return (FAULT_ROUTES as readonly string[]).includes(route);
}

function isBodyFault(fault: FaultKind): fault is BodyFault {
  return fault.kind === 'stallBody' || fault.kind === 'resetMidBody' || fault.kind === 'cutChunked';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function faultProblem(fault: Fault): string | null {
  if (!isPlainObject(fault)) return 'not an object';
  const count = (value: unknown) => typeof value === 'number' && Number.isInteger(value) && value >= 0;
  if (fault.times !== undefined && !(count(fault.times) && fault.times > 0)) return 'times must be a positive integer';
  if (fault.meetingId !== undefined && typeof fault.meetingId !== 'string') return 'meetingId must be a string';
  switch (fault.kind) {
    case 'status':
      return count(fault.code) && fault.code >= 100 && fault.code <= 599 ? null : 'code must be an HTTP status';
    case 'invalidJson':
    case 'html':
    case 'hang':
      return null;
    case 'hugeBody':
      return count(fault.bytes) && fault.bytes > 0 ? null : 'bytes must be a positive integer';
    case 'notZip':
      return fault.bytes === undefined || count(fault.bytes) ? null : 'bytes must be a non-negative integer';
    case 'stallBody':
    case 'resetMidBody':
    case 'cutChunked':
      return count(fault.afterBytes) ? null : 'afterBytes must be a non-negative integer';
    default:
      return `unknown kind ${JSON.stringify((fault as { kind?: unknown }).kind)}`;
  }
}

function faultResponse(fault: Exclude<FaultKind, BodyFault | { kind: 'hang' }>, meetingId: string): PlannedResponse {
  switch (fault.kind) {
    case 'status':
      if (fault.code === 500) return internalServerError();
      return json(fault.code, { detail: STATUS_CODES[fault.code] ?? `HTTP ${fault.code}` });
    case 'invalidJson':
      return {
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(`{"id":"${randomUUID()}","active_meetings":[{"id":"${meetingId}","title":"第一季度`, 'utf8'),
      };
    case 'html':
      return {
        status: 502,
        headers: { server: 'nginx/1.24.0', 'content-type': 'text/html' },
        body: PROXY_ERROR_HTML,
      };
    case 'hugeBody':
      return {
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: () => hugeJson(fault.bytes, meetingId),
      };
    case 'notZip':
      return {
        status: 200,
        headers: {
          'content-type': 'application/zip',
          'content-disposition': `attachment; filename="meeting_${meetingId}_pdfs.zip"`,
        },
        body: () => randomChunks(fault.bytes ?? DEFAULT_NOT_ZIP_BYTES),
      };
  }
}

/** Valid JSON of exactly `bytes` bytes (or the minimal prefix+suffix when smaller). */
async function* hugeJson(bytes: number, meetingId: string): AsyncGenerator<Buffer> {
  const prefix = Buffer.from(`{"id":"${randomUUID()}","active_meetings":[{"id":"${meetingId}","title":"`, 'utf8');
  const suffix = Buffer.from(`"}],"timestamp":${pythonTimestamp()}}`, 'utf8');
  yield prefix;
  let padding = Math.max(0, bytes - prefix.length - suffix.length);
  const block = Buffer.alloc(64 * 1024, 'a');
  while (padding > 0) {
    const size = Math.min(block.length, padding);
    padding -= size;
    yield block.subarray(0, size);
  }
  yield suffix;
}

async function* randomChunks(bytes: number): AsyncGenerator<Buffer> {
  let remaining = bytes;
  while (remaining > 0) {
    const size = Math.min(16 * 1024, remaining);
    remaining -= size;
    yield randomFillSync(Buffer.allocUnsafe(size));
  }
}

async function* bufferChunks(buffer: Buffer, chunkSize: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < buffer.length; offset += chunkSize) {
    yield buffer.subarray(offset, Math.min(offset + chunkSize, buffer.length));
  }
}

async function* fileChunks(handle: FileHandle, chunkSize: number): AsyncGenerator<Buffer> {
  const readSize = Math.max(chunkSize, FILE_READ_BYTES);
  for (;;) {
    // A fresh buffer per read: written slices stay referenced until the socket flushes them.
    const buffer = Buffer.allocUnsafe(readSize);
    const { bytesRead } = await handle.read(buffer, 0, readSize, null);
    if (bytesRead === 0) return;
    for (let offset = 0; offset < bytesRead; offset += chunkSize) {
      yield buffer.subarray(offset, Math.min(offset + chunkSize, bytesRead));
    }
  }
}

function json(status: number, value: unknown): PlannedResponse {
  return {
    status,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(value), 'utf8'),
  };
}

function internalServerError(): PlannedResponse {
  return {
    status: 500,
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    body: Buffer.from('Internal Server Error', 'utf8'),
  };
}

function validationError(issues: ValidationIssue[]): PlannedResponse {
  return json(422, { detail: issues });
}

/** FastAPI parses the body as JSON when there is no content-type or a JSON one. */
function parseJsonBody(req: IncomingMessage, raw: Buffer): ParsedBody {
  const contentType = req.headers['content-type'];
  const isJson = contentType === undefined || /^application\/([\w.-]+\+)?json\s*(;|$)/i.test(contentType);
  if (!isJson) {
    return {
      ok: false,
      issues: [{
        type: 'model_attributes_type',
        loc: ['body'],
        msg: 'Input should be a valid dictionary or object to extract fields from',
        input: raw.toString('utf8'),
      }],
    };
  }
  if (raw.length === 0) return { ok: false, issues: [{ type: 'missing', loc: ['body'], msg: 'Field required', input: null }] };
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (error) {
    return {
      ok: false,
      issues: [{
        type: 'json_invalid',
        loc: ['body', 0],
        msg: 'JSON decode error',
        input: {},
        ctx: { error: error instanceof Error ? error.message : 'Expecting value' },
      }],
    };
  }
  if (!isPlainObject(value)) {
    return {
      ok: false,
      issues: [{
        type: 'model_attributes_type',
        loc: ['body'],
        msg: 'Input should be a valid dictionary or object to extract fields from',
        input: value,
      }],
    };
  }
  return { ok: true, value };
}

function fieldIssues(body: Record<string, unknown>, field: string, kind: 'string' | 'list', required: boolean): ValidationIssue[] {
  const value = body[field];
  if (value === undefined) {
    return required ? [{ type: 'missing', loc: ['body', field], msg: 'Field required', input: body }] : [];
  }
  if (kind === 'string' && typeof value !== 'string') {
    return [{ type: 'string_type', loc: ['body', field], msg: 'Input should be a valid string', input: value }];
  }
  if (kind === 'list' && !Array.isArray(value)) {
    return [{ type: 'list_type', loc: ['body', field], msg: 'Input should be a valid list', input: value }];
  }
  return [];
}

function parseAdminDocuments(value: unknown): PackageDocument[] | undefined | null {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) return null;
  const documents: PackageDocument[] = [];
  for (const item of value) {
    if (!isPlainObject(item) || typeof item['name'] !== 'string') return null;
    if (item['content'] !== undefined && typeof item['content'] !== 'string') return null;
    documents.push(typeof item['content'] === 'string' ? { name: item['name'], content: item['content'] } : { name: item['name'] });
  }
  return documents;
}

/** time.time() as Python's json prints it: always with a fractional part. */
function pythonTimestamp(): number {
  return pythonFloat((performance.timeOrigin + performance.now()) / 1000);
}

function pythonFloat(value: number): number {
  return Number.isInteger(value) ? value + 1e-6 : value;
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

async function readBody(req: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > MAX_REQUEST_BODY_BYTES) tooLarge = true;
    // Keep draining so the socket can be answered (and closed) without a reset.
    if (!tooLarge) chunks.push(buffer);
  }
  return tooLarge ? null : Buffer.concat(chunks);
}

function closed(res: ServerResponse): Promise<void> {
  if (res.destroyed || res.writableFinished) return Promise.resolve();
  return new Promise((resolve) => res.once('close', () => resolve()));
}

/** True when the response was fully handed to the OS, false when the connection went first. */
function finished(res: ServerResponse): Promise<boolean> {
  if (res.writableFinished) return Promise.resolve(true);
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onFinish = () => {
      res.off('close', onClose);
      resolve(true);
    };
    const onClose = () => {
      res.off('finish', onFinish);
      resolve(res.writableFinished);
    };
    res.once('finish', onFinish);
    res.once('close', onClose);
  });
}

function drained(res: ServerResponse): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onDrain = () => {
      res.off('close', onClose);
      resolve(true);
    };
    const onClose = () => {
      res.off('drain', onDrain);
      resolve(false);
    };
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}

/** Waits (bounded) until everything written so far has left node's buffers for the kernel. */
async function writtenOut(res: ServerResponse, socket: Socket): Promise<void> {
  const giveUpAt = Date.now() + 2_000;
  while (!socket.destroyed && (res.writableLength > 0 || socket.writableLength > 0) && Date.now() < giveUpAt) {
    await sleep(2);
  }
}
