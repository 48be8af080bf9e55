// Planned responses and the FastAPI/uvicorn shapes of JSON answers and errors.
import { STATUS_CODES } from 'node:http';

export type BodyChunks = () => AsyncGenerator<Buffer>;

export interface PlannedResponse {
  status: number;
  headers: Record<string, string>;
  /** A Buffer goes out with Content-Length; chunks go out chunked, one HTTP chunk per write. */
  body: Buffer | BodyChunks;
}

export type ValidationIssue = {
  type: string;
  loc: (string | number)[];
  msg: string;
  input: unknown;
  ctx?: Record<string, unknown>;
};

export function json(status: number, value: unknown): PlannedResponse {
  return {
    status,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(value), 'utf8'),
  };
}

/** starlette's plain-text 500 page. */
export function internalServerError(): PlannedResponse {
  return {
    status: 500,
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    body: Buffer.from('Internal Server Error', 'utf8'),
  };
}

export function statusError(code: number): PlannedResponse {
  if (code === 500) return internalServerError();
  return json(code, { detail: STATUS_CODES[code] ?? `HTTP ${code}` });
}

export function validationError(issues: ValidationIssue[]): PlannedResponse {
  return json(422, { detail: issues });
}

export function redirect(status: 302 | 307, location: string): PlannedResponse {
  return { status, headers: { location }, body: Buffer.alloc(0) };
}

/** time.time() as Python's json prints it: always with a fractional part. */
export function pythonTimestamp(): number {
  return pythonFloat((performance.timeOrigin + performance.now()) / 1000);
}

export function pythonFloat(value: number): number {
  return Number.isInteger(value) ? value + 1e-6 : value;
}
