// Fault injection: which faults are armed per route, their validation, and the short-circuit
// answers they give. Body faults (stall, reset, cut) are carried out by delivery.ts.
import { randomFillSync, randomUUID } from 'node:crypto';
import { type PlannedResponse, json, pythonTimestamp, statusError } from './responses.ts';
import { isPlainObject } from './request-body.ts';
import { FAULT_ROUTES, type BodyFault, type Fault, type FaultKind, type FaultRoute } from './types.ts';

const DEFAULT_NOT_ZIP_BYTES = 256 * 1024;

const PROXY_ERROR_HTML = Buffer.from(
  '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n' +
    '<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n',
  'latin1',
);

export function isFaultRoute(route: string): route is FaultRoute {
  return (FAULT_ROUTES as readonly string[]).includes(route);
}

export function isBodyFault(fault: FaultKind): fault is BodyFault {
  return fault.kind === 'stallBody' || fault.kind === 'resetMidBody' || fault.kind === 'cutChunked';
}

/** Armed faults, per route. */
export class FaultTable {
  readonly #faults = new Map<FaultRoute, Fault>();

  set(route: FaultRoute, fault: Fault | null): void {
    if (!isFaultRoute(route)) throw new Error(`unknown fault route: ${String(route)}`);
    if (fault === null) {
      this.#faults.delete(route);
      return;
    }
    const problem = faultProblem(fault);
    if (problem) throw new Error(`invalid fault: ${problem}`);
    this.#faults.set(route, structuredClone(fault));
  }

  list(): Partial<Record<FaultRoute, Fault>> {
    return Object.fromEntries(structuredClone([...this.#faults])) as Partial<Record<FaultRoute, Fault>>;
  }

  /** The fault that applies to this request, counted down (and cleared after its `times`). */
  take(route: string, meetingId: string | undefined): Fault | null {
    if (!isFaultRoute(route)) return null;
    const fault = this.#faults.get(route);
    if (!fault) return null;
    if (fault.meetingId !== undefined && fault.meetingId !== meetingId) return null;
    if (fault.times !== undefined) {
      fault.times -= 1;
      if (fault.times <= 0) this.#faults.delete(route);
    }
    return fault;
  }
}

export function faultProblem(fault: Fault): string | null {
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

export function faultResponse(fault: Exclude<FaultKind, BodyFault | { kind: 'hang' }>, meetingId: string): PlannedResponse {
  switch (fault.kind) {
    case 'status':
      return statusError(fault.code);
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
