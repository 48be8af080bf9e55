import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Agent, requestThrough } from './undici-parts.ts';
import { isValidMeetingId } from '../meeting-id.ts';
import { packageGet, type PackageGetResponse } from './package-get.ts';

export interface ActiveMeeting {
  id: string;
  title: string;
}

export interface MeetingStatus {
  /** The master's status token ("id"); null from the legacy single-meeting form. */
  token: string | null;
  meetings: ActiveMeeting[];
  /** Entries dropped because their id is not a valid meeting id (never fetched). */
  rejectedIds: string[];
}

/** A node of the site as the master lists it (GET /api/v1/nodes/list: nodes seen in the last 30 s). */
export interface SiteNode {
  nodeId: string;
  /** host:port as the node registered it. */
  address: string;
  /** Unix seconds, when the master gave it. */
  lastSeen: number | null;
  /** Ids of the meetings its last heartbeat listed, when the master gave them. */
  activeMeetings: string[];
}

/** A meeting of the master's full list (GET /api/v1/meetings/), started or not. */
export interface ScheduledMeeting {
  id: string;
  title: string;
  /** Scheduled start as the master gives it: `YYYY-MM-DDTHH:MM`, the master's local time, no zone; null if absent. */
  time: string | null;
  status: 'not-started' | 'active' | 'ended' | 'unknown';
}

export interface HeartbeatPayload {
  node_id: string;
  address: string;
  status: 'online';
  active_meetings: ActiveMeeting[];
  synced_meetings: string[];
  /** Optional extras the real master ignores; a load-aware master may use them. */
  [extra: string]: unknown;
}

/** A failed call to the master, with what an operator needs to see. */
export class MasterError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'MasterError';
  }
}

export interface MasterClientOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /** Headers and whole-body limit for the small JSON calls (not for packages). */
  requestTimeoutMs: number;
  /** Largest JSON answer accepted; a status body of many MB is a fault, not data. */
  maxJsonBytes?: number;
}

export interface PackageResponse {
  /** The payload (framing removed); errors, never ends, when the transfer is cut. */
  body: Readable;
  headers: Record<string, string>;
  /** A chunked body's trailer fields, filled in once the body has ended (a seed's sha256, site-tier.ts). */
  trailers?: Record<string, string>;
  /** The package's byte the body starts at: a sibling's 206 resuming a kept download; default 0 (the whole package). */
  offset?: number;
}

/** Titles must be non-empty strings or the master answers 500 and breaks /nodes/list for everyone. */
export function safeTitle(id: string, title: unknown): string {
  return typeof title === 'string' && title.trim() !== '' ? title : `会议 ${id}`;
}

const STATUS_WORDS: Record<string, ScheduledMeeting['status']> = { 未开始: 'not-started', 进行中: 'active', 已结束: 'ended' };

/** The master's node list; entries without a usable id or address are left out. */
export function parseNodeList(body: unknown): SiteNode[] {
  if (!Array.isArray(body)) throw new MasterError('node list is not a JSON array', 'BAD_NODE_LIST');
  const nodes: SiteNode[] = [];
  for (const entry of body) {
    if (typeof entry !== 'object' || entry === null) continue;
    const record = entry as Record<string, unknown>;
    if (typeof record.node_id !== 'string' || record.node_id === '' || typeof record.address !== 'string' || !/^[^\s/]+:\d{1,5}$/.test(record.address)) continue;
    if (record.status !== undefined && record.status !== 'online') continue;
    const meetings = Array.isArray(record.active_meetings) ? record.active_meetings : [];
    nodes.push({
      nodeId: record.node_id,
      address: record.address,
      lastSeen: typeof record.last_seen === 'number' ? record.last_seen : null,
      activeMeetings: meetings
        .map((m) => (typeof m === 'string' ? m : typeof m === 'object' && m !== null ? (m as Record<string, unknown>).id : undefined))
        .filter((id): id is string => isValidMeetingId(id)),
    });
  }
  return nodes;
}

/** The master's full meeting list; entries with an invalid id are left out. */
export function parseMeetingList(body: unknown): ScheduledMeeting[] {
  if (!Array.isArray(body)) throw new MasterError('meeting list is not a JSON array', 'BAD_MEETING_LIST');
  const meetings: ScheduledMeeting[] = [];
  for (const entry of body) {
    if (typeof entry !== 'object' || entry === null) continue;
    const record = entry as Record<string, unknown>;
    const id = typeof record.id === 'number' ? String(record.id) : record.id;
    if (!isValidMeetingId(id)) continue;
    meetings.push({
      id,
      title: safeTitle(id, record.title),
      time: typeof record.time === 'string' && record.time.trim() !== '' ? record.time.trim() : null,
      status: typeof record.status === 'string' ? (STATUS_WORDS[record.status] ?? 'unknown') : 'unknown',
    });
  }
  return meetings;
}

/** Normalises both the current and the legacy (`active_meeting`) status forms. */
export function parseMeetingStatus(body: unknown): MeetingStatus {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new MasterError('status answer is not a JSON object', 'BAD_STATUS_BODY');
  }
  const record = body as Record<string, unknown>;
  const token = typeof record.id === 'string' ? record.id : null;
  let raw: unknown[];
  if (Array.isArray(record.active_meetings)) raw = record.active_meetings;
  else if (typeof record.active_meeting === 'string' && record.active_meeting !== '') raw = [record.active_meeting];
  else if (record.active_meetings === undefined && (record.active_meeting === undefined || record.active_meeting === null || record.active_meeting === '')) raw = [];
  else throw new MasterError('status answer has no active_meetings list', 'BAD_STATUS_BODY');

  const meetings: ActiveMeeting[] = [];
  const rejectedIds: string[] = [];
  const seen = new Set<string>();
  for (const entry of raw) {
    const id = typeof entry === 'string' ? entry : typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>).id : undefined;
    const idText = typeof id === 'number' ? String(id) : id;
    if (!isValidMeetingId(idText)) {
      rejectedIds.push(String(idText).slice(0, 200));
      continue;
    }
    if (seen.has(idText)) continue;
    seen.add(idText);
    const title = typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>).title : undefined;
    meetings.push({ id: idText, title: safeTitle(idText, title) });
  }
  return { token, meetings, rejectedIds };
}

/**
 * The node's only way to talk to the master. One undici Agent per master address: the composition
 * root builds a new client when the master changes.
 */
export class MasterClient {
  readonly baseUrl: string;
  readonly #host: string;
  readonly #dispatcher: Agent;
  readonly #options: Required<MasterClientOptions>;

  constructor(options: MasterClientOptions) {
    this.#options = { maxJsonBytes: 1 << 20, ...options };
    const host = options.host.includes(':') && !options.host.startsWith('[') ? `[${options.host}]` : options.host;
    this.baseUrl = `http://${host}:${options.port}`;
    this.#host = options.host.replace(/^\[(.*)\]$/, '$1');
    this.#dispatcher = new Agent({
      connect: { timeout: options.connectTimeoutMs },
      keepAliveTimeout: 4_000,
      // Package downloads set their own (longer) timeouts per request.
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
    });
  }

  async register(nodeId: string, address: string): Promise<void> {
    await this.#postJson('/api/v1/nodes/register', { node_id: nodeId, address, status: 'online' });
  }

  async heartbeat(payload: HeartbeatPayload): Promise<void> {
    await this.#postJson('/api/v1/nodes/heartbeat', payload);
  }

  /** Unregisters; an unknown node (404) is fine at shutdown. */
  async unregister(nodeId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.#call('POST', '/api/v1/nodes/unregister', { node_id: nodeId }, signal);
    } catch (error) {
      if (error instanceof MasterError && error.status === 404) return;
      throw error;
    }
  }

  async getMeetingStatus(signal?: AbortSignal): Promise<MeetingStatus> {
    const body = await this.#call('GET', '/api/v1/meetings/status/node', undefined, signal);
    return parseMeetingStatus(body);
  }

  /** The nodes of the site (public on the master; nodes seen in the last 30 s). */
  async listNodes(signal?: AbortSignal): Promise<SiteNode[]> {
    return parseNodeList(await this.#call('GET', '/api/v1/nodes/list', undefined, signal));
  }

  /** Every meeting the master knows, with its scheduled time and status (the trailing slash avoids a 307). */
  async listMeetings(signal?: AbortSignal): Promise<ScheduledMeeting[]> {
    // Every meeting with its agenda: larger than a status answer, still bounded.
    return parseMeetingList(await this.#call('GET', '/api/v1/meetings/', undefined, signal, 16 * this.#options.maxJsonBytes));
  }

  /**
   * Starts the package download, on its own connection read in large blocks (package-get.ts:
   * undici's body path cost more than the rest of a fast download). The caller consumes (or
   * destroys) the body and enforces the idle timeout itself, as it must whatever the client.
   */
  async openPackage(meetingId: string, options: { signal: AbortSignal; headersTimeoutMs: number; idleTimeoutMs: number }): Promise<PackageResponse> {
    if (!isValidMeetingId(meetingId)) throw new MasterError(`invalid meeting id ${meetingId}`, 'BAD_ID');
    let response: PackageGetResponse;
    try {
      response = await packageGet({
        host: this.#host,
        port: this.#options.port,
        path: `/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package-direct`,
        headers: { accept: 'application/zip' },
        signal: options.signal,
        connectTimeoutMs: this.#options.connectTimeoutMs,
        headersTimeoutMs: options.headersTimeoutMs,
      });
    } catch (error) {
      throw toMasterError(error, 'package request');
    }
    if (response.statusCode !== 200) {
      const detail = await readSmallText(response.body, 2048);
      throw new MasterError(`package request answered HTTP ${response.statusCode}${detail ? `: ${detail}` : ''}`, 'HTTP_STATUS', response.statusCode);
    }
    return { body: response.body, headers: response.headers };
  }

  async close(): Promise<void> {
    await this.#dispatcher.close().catch(() => this.#dispatcher.destroy());
  }

  async destroy(): Promise<void> {
    await this.#dispatcher.destroy().catch(() => {});
  }

  async #postJson(path: string, body: unknown): Promise<unknown> {
    return this.#call('POST', path, body);
  }

  async #call(method: 'GET' | 'POST', path: string, body?: unknown, signal?: AbortSignal, maxBytes = this.#options.maxJsonBytes): Promise<unknown> {
    const what = `${method} ${path}`;
    const timeout = AbortSignal.timeout(this.#options.requestTimeoutMs + this.#options.connectTimeoutMs);
    let response: Dispatcher.ResponseData;
    try {
      response = await requestThrough(this.#dispatcher, {
        origin: this.baseUrl,
        path,
        method,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw toMasterError(error, what);
    }
    let text: string;
    try {
      text = await readBoundedText(response.body, maxBytes);
    } catch (error) {
      throw error instanceof MasterError ? new MasterError(`${what}: ${error.message}`, error.code, response.statusCode) : toMasterError(error, what);
    }
    if (response.statusCode < 200 || response.statusCode >= 300) {
      throw new MasterError(`${what} answered HTTP ${response.statusCode}${describeDetail(text)}`, 'HTTP_STATUS', response.statusCode);
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new MasterError(`${what} answered invalid JSON: ${JSON.stringify(text.slice(0, 80))}`, 'BAD_JSON', response.statusCode);
    }
  }
}

function describeDetail(text: string): string {
  try {
    const parsed = JSON.parse(text) as { detail?: unknown };
    if (typeof parsed.detail === 'string') return `: ${parsed.detail}`;
  } catch {
    // Not JSON (an HTML error page from a proxy, say): show the start of it.
  }
  // An HTML page's markup means nothing in the panel or the log: its title (or its text) does.
  const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1];
  const readable = title ?? text.replace(/<[^>]*>/g, ' ');
  const snippet = readable.replace(/\s+/g, ' ').trim().slice(0, 80);
  return snippet ? `: ${snippet}` : '';
}

/** A small answer's body as text; an answer larger than `limit` is an error, not data. */
export async function readBoundedText(body: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      body.destroy();
      throw new MasterError(`answer larger than ${limit} bytes`, 'BODY_TOO_LARGE');
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readSmallText(body: Readable, limit: number): Promise<string> {
  try {
    return describeDetail(await readBoundedText(body, limit)).replace(/^: /, '');
  } catch {
    return '';
  }
}

export function toMasterError(error: unknown, what: string): MasterError {
  if (error instanceof MasterError) return error;
  const err = error as { code?: string; name?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.code ?? err.cause?.code ?? err.name ?? 'ERROR';
  const reason = err.cause?.message ?? err.message ?? String(error);
  return new MasterError(`${what} failed: ${reason} (${code})`, code);
}
