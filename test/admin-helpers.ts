import { request as httpRequest } from 'node:http';
import { inflateRawSync } from 'node:zlib';
import type { ReferenceMaster } from '../reference-master/master.ts';
import { startNode, type TestNode } from './helpers.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface AdminNodeOptions {
  config?: Record<string, unknown>;
  /** Failed-auth limit; tests that send many bad tokens raise it so they do not trip it. */
  authLimit?: { maxFailures: number; windowMs: number };
  /** As start.ts passes it when --port or EDGE_PORT set the port. */
  portSource?: string;
}

/** An edge node with a known admin token (see startNode for the rest). */
export function startAdminNode(masterPort: number, options: AdminNodeOptions = {}): Promise<TestNode> {
  return startNode(masterPort, {
    config: { adminToken: ADMIN_TOKEN, ...options.config },
    node: { policy: { authLimit: options.authLimit }, ...(options.portSource ? { portSource: options.portSource } : {}) },
  });
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** fetch() against the node; `token: null` sends no Authorization header. */
export async function api(
  baseUrl: string,
  method: string,
  path: string,
  options: { token?: string | null; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<ApiResponse> {
  const token = options.token === undefined ? ADMIN_TOKEN : options.token;
  const headers: Record<string, string> = { ...options.headers };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (options.rawBody !== undefined) body = options.rawBody;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON (metrics, zip): callers use text.
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A POST whose body is sent chunked (no Content-Length), as a streaming client would. */
export function postChunked(url: string, chunks: Buffer[], headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { ...headers, 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        body += text;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    // The server may answer 413 and close before reading everything.
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? undefined : reject(error)));
    for (const chunk of chunks) req.write(chunk);
    req.end();
  });
}

/** How many requests of one route (register, unregister, heartbeat, status...) the master saw. */
export function masterCount(master: ReferenceMaster, route: string): number {
  return master.stats().requests[route] ?? 0;
}

export interface SseMessage {
  event: string;
  data: any;
  receivedAt: number;
}

/** Reads /api/events with the bearer header until stop() (the same way the panel does). */
export function openEvents(baseUrl: string, token = ADMIN_TOKEN): { messages: SseMessage[]; ready: Promise<void>; stop(): void } {
  const controller = new AbortController();
  const messages: SseMessage[] = [];
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  void (async () => {
    try {
      const res = await fetch(`${baseUrl}/api/events`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
      if (!res.body) return;
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          let data: string | null = null;
          for (const line of frame.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data = line.slice(6);
          }
          if (data !== null) {
            messages.push({ event, data: JSON.parse(data), receivedAt: Date.now() });
            if (event === 'hello') markReady();
          }
        }
      }
    } catch {
      // Aborted by stop(), or the node went away.
    }
  })();
  return { messages, ready, stop: () => controller.abort() };
}

/** The entries of a zip (stored or deflated), read from its central directory. */
export function unzipEntries(zip: Buffer): Map<string, Buffer> {
  const entries = new Map<string, Buffer>();
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip: no end of central directory');
  const count = zip.readUInt16LE(eocd + 10);
  let offset = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(offset) !== 0x02014b50) throw new Error('bad central directory entry');
    const method = zip.readUInt16LE(offset + 10);
    const compressedSize = zip.readUInt32LE(offset + 20);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extraLength = zip.readUInt16LE(offset + 30);
    const commentLength = zip.readUInt16LE(offset + 32);
    const localOffset = zip.readUInt32LE(offset + 42);
    const name = zip.subarray(offset + 46, offset + 46 + nameLength).toString('utf8');
    const localName = zip.readUInt16LE(localOffset + 26);
    const localExtra = zip.readUInt16LE(localOffset + 28);
    const start = localOffset + 30 + localName + localExtra;
    const raw = zip.subarray(start, start + compressedSize);
    entries.set(name, method === 8 ? inflateRawSync(raw) : Buffer.from(raw));
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}
