// The reference master's HTTP server: routes each request to the registry, meetings, packages,
// faults or admin modules, and composes them behind the ReferenceMaster interface. Raw node:http on
// purpose: the node must be tested against exact wire behaviour (chunked bodies without
// Content-Length, bodies cut before the terminating chunk, TCP resets, hangs), which a framework
// would smooth over.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { handleAdmin } from './admin.ts';
import { closed, deliver, type DeliveryOptions } from './delivery.ts';
import { FaultTable, faultResponse, isBodyFault } from './faults.ts';
import { MeetingBook } from './meetings.ts';
import { onAvailable, onHeartbeat, onList, onRegister, onUnregister } from './node-api.ts';
import { NodeRegistry } from './nodes.ts';
import { PackageBuilder } from './package-builder.ts';
import { onPackage, type PackageRouteDeps } from './package-route.ts';
import type { PackageDocument } from './packages.ts';
import { readBody } from './request-body.ts';
import { type PlannedResponse, json, pythonTimestamp, redirect } from './responses.ts';
import { matchRoute, slashRedirect } from './routes.ts';
import { SharedRate } from './shared-rate.ts';
import { StatsBook } from './stats.ts';
import { TokenClock } from './token.ts';
import type {
  AddMeetingInput,
  BodyFault,
  Fault,
  FaultRoute,
  MasterStats,
  MeetingTimeInput,
  MeetingView,
  NodeView,
  ReferenceMaster,
  ReferenceMasterOptions,
  RequestLogEntry,
} from './types.ts';

const ROOT_HTML = Buffer.from(
  '<!DOCTYPE html><html lang="zh"><head><meta charset="utf-8"><title>无纸化会议系统</title></head>' +
    '<body><h1>无纸化会议系统</h1><p>Paperless meeting master (reference implementation)</p></body></html>',
  'utf8',
);

export class ReferenceMasterServer implements ReferenceMaster {
  readonly #legacyStatus: boolean;
  readonly #advertisedAddress: string | undefined;
  /** Delivery of every response but package bodies. */
  readonly #delivery: DeliveryOptions;
  readonly #packages: PackageRouteDeps;

  readonly #server: http.Server;
  readonly #sockets = new Set<Socket>();
  readonly #stats: StatsBook;
  readonly #nodes: NodeRegistry;
  readonly #token: TokenClock;
  readonly #builder: PackageBuilder;
  readonly #meetings: MeetingBook;
  readonly #faults = new FaultTable();
  readonly #sweepTimer: NodeJS.Timeout;
  #listenAddress: { host: string; port: number } | null = null;
  #closing: Promise<void> | null = null;

  constructor(options: ReferenceMasterOptions) {
    const nodeExpiryMs = options.nodeExpiryMs ?? 30_000;
    this.#legacyStatus = options.legacyStatus ?? false;
    this.#advertisedAddress = options.advertisedAddress;
    this.#delivery = {
      chunkSize: Math.max(1, Math.floor(options.chunkSize ?? 16 * 1024)),
      faultFlushDelayMs: options.faultFlushDelayMs ?? 50,
    };

    this.#stats = new StatsBook(options.requestLogLimit ?? 10_000);
    this.#nodes = new NodeRegistry(nodeExpiryMs);
    this.#token = new TokenClock(
      {
        checkIntervalMs: options.tokenCheckIntervalMs ?? 5_000,
        settleMs: options.tokenSettleMs ?? 3_000,
        maxWaitMs: options.tokenMaxWaitMs ?? 300_000,
      },
      (meetingId) => this.#nodes.allOnlineSynced(meetingId),
      () => this.#stats.tokenChange(),
    );
    this.#builder = new PackageBuilder(options.tempDir ?? tmpdir(), (record) => this.#stats.build(record));
    this.#meetings = new MeetingBook(this.#builder, this.#token);
    this.#packages = {
      meetings: this.#meetings,
      nodes: this.#nodes,
      stats: this.#stats,
      redirectToNodes: options.redirectToNodes ?? false,
      delivery: {
        ...this.#delivery,
        throttle: options.throttleBytesPerSec ? options.throttleBytesPerSec : null,
        sharedRate: options.packageRateBytesPerSec ? new SharedRate(options.packageRateBytesPerSec) : null,
      },
    };

    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => this.#failResponse(res, error));
    });
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    // Hanging and stalling faults keep responses open for as long as the client waits.
    this.#server.requestTimeout = 0;
    const sweepMs = options.nodeSweepIntervalMs ?? Math.max(1, Math.round(nodeExpiryMs / 3));
    this.#sweepTimer = setInterval(() => this.#nodes.sweep(), sweepMs);
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
    this.#token.stop();
    this.#meetings.close();
    const serverClosed = this.#server.listening
      ? new Promise<void>((resolve) => this.#server.close(() => resolve()))
      : Promise.resolve();
    for (const socket of this.#sockets) socket.destroy();
    this.#server.closeAllConnections();
    await serverClosed;
    await this.#builder.close();
  }

  // ---- the ReferenceMaster interface ----------------------------------------------------------

  addMeeting(input: AddMeetingInput): MeetingView {
    return this.#meetings.add(input);
  }

  startMeeting(id: string): Promise<MeetingView> {
    return this.#meetings.start(id);
  }

  endMeeting(id: string): Promise<MeetingView> {
    try {
      return this.#meetings.end(id);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  setDocuments(id: string, documents: readonly PackageDocument[]): MeetingView {
    return this.#meetings.setDocuments(id, documents);
  }

  setMeetingTime(id: string, time: MeetingTimeInput): MeetingView {
    return this.#meetings.setTime(id, time);
  }

  deleteMeeting(id: string): Promise<void> {
    try {
      return this.#meetings.delete(id);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  meetings(): MeetingView[] {
    return this.#meetings.views();
  }

  meeting(id: string): MeetingView | null {
    return this.#meetings.view(id);
  }

  token(): string {
    return this.#token.current();
  }

  nodes(): NodeView[] {
    return this.#nodes.views();
  }

  stats(): MasterStats {
    return this.#stats.snapshot();
  }

  resetStats(): void {
    this.#stats.reset();
  }

  setFault(route: FaultRoute, fault: Fault | null): void {
    this.#faults.set(route, fault);
  }

  faults(): Partial<Record<FaultRoute, Fault>> {
    return this.#faults.list();
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
    this.#stats.request(entry);
    res.once('finish', () => {
      entry.status = res.statusCode;
    });
    res.once('close', () => {
      entry.status ??= res.headersSent ? res.statusCode : undefined;
    });

    const rawBody = method === 'POST' || method === 'PUT' || method === 'PATCH' ? await readBody(req) : Buffer.alloc(0);
    if (rawBody === null) {
      await this.#send(req, res, json(413, { detail: 'Request body too large' }));
      return;
    }

    if (match?.route === 'admin') {
      await handleAdmin(this, req, res, pathname, rawBody, this.#delivery);
      return;
    }
    if (!match) {
      const target = slashRedirect(pathname);
      if (target) {
        const query = rawPath.slice(pathname.length);
        const host = req.headers.host ?? this.#masterAddress(req);
        await this.#send(req, res, redirect(307, `http://${host}${target}${query}`));
        return;
      }
      await this.#send(req, res, json(404, { detail: 'Not Found' }));
      return;
    }
    if (!match.allowed.includes(method)) {
      await this.#send(req, res, {
        ...json(405, { detail: 'Method Not Allowed' }),
        headers: { allow: match.allowed.join(', '), 'content-type': 'application/json' },
      });
      return;
    }

    // Faults act at the front door: a short-circuiting fault answers before the route runs (no
    // registry change); a body fault lets the route run, then breaks its response mid-body.
    const fault = this.#faults.take(match.route, match.meetingId);
    let bodyFault: BodyFault | undefined;
    if (fault) {
      this.#stats.fault(match.route);
      entry.fault = fault.kind;
      if (isBodyFault(fault)) {
        bodyFault = fault;
      } else if (fault.kind === 'hang') {
        await closed(res);
        return;
      } else {
        await this.#send(req, res, faultResponse(fault, match.meetingId ?? 'm1'));
        return;
      }
    }

    const answer = (plan: PlannedResponse) => this.#send(req, res, plan, bodyFault);
    switch (match.route) {
      case 'root':
        await answer({ status: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: ROOT_HTML });
        return;
      case 'register':
        await answer(onRegister(this.#nodes, req, rawBody));
        return;
      case 'unregister':
        await answer(onUnregister(this.#nodes, req, rawBody));
        return;
      case 'heartbeat':
        await answer(onHeartbeat(this.#nodes, req, rawBody, () => this.#stats.heartbeat()));
        return;
      case 'list':
        await answer(onList(this.#nodes));
        return;
      case 'available':
        await answer(onAvailable(this.#nodes));
        return;
      case 'status':
        await answer(this.#onStatus());
        return;
      case 'tabletStatus':
        await answer(this.#onTabletStatus());
        return;
      case 'meetingList':
        await answer(json(200, this.#meetings.listing()));
        return;
      case 'nodesInfo':
        await answer(this.#onNodesInfo(req, match.meetingId ?? ''));
        return;
      case 'package':
      case 'tabletPackage':
        await onPackage(this.#packages, req, res, match.route, match.meetingId ?? '', bodyFault);
        return;
      case 'notFound':
        return;
    }
  }

  #send(req: IncomingMessage, res: ServerResponse, plan: PlannedResponse, fault?: BodyFault): Promise<unknown> {
    return deliver(req, res, plan, fault, this.#delivery);
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

  #onStatus(): PlannedResponse {
    const active = this.#meetings.activeList();
    if (this.#legacyStatus) return json(200, { active_meeting: active[0]?.id ?? null });
    return json(200, { id: this.#token.current(), active_meetings: active, timestamp: pythonTimestamp() });
  }

  /** The tablets' poll: meetings in progress only; the id is "none" when none is. */
  #onTabletStatus(): PlannedResponse {
    const active = this.#meetings.activeList();
    return json(200, {
      id: active.length > 0 ? this.#token.current() : 'none',
      active_meetings: active,
      timestamp: pythonTimestamp(),
    });
  }

  #onNodesInfo(req: IncomingMessage, meetingId: string): PlannedResponse {
    const meeting = this.#meetings.view(meetingId);
    if (!meeting) return json(404, { detail: `会议 ${meetingId} 不存在` });
    if (!meeting.active) return json(404, { detail: `会议 ${meetingId} 未在进行中` });
    const path = `/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package`;
    const master = this.#masterAddress(req);
    return json(200, [
      { ip: master, download_url: `http://${master}${path}` },
      ...this.#nodes.onlineAddresses().map((address) => ({ ip: address, download_url: `http://${address}${path}` })),
    ]);
  }

  #masterAddress(req: IncomingMessage): string {
    if (this.#advertisedAddress) return this.#advertisedAddress;
    if (req.headers.host) return req.headers.host;
    const listen = this.#listenAddress;
    return listen ? `${urlHost(listen.host)}:${listen.port}` : '127.0.0.1';
  }
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
