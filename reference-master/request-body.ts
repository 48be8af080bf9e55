// Reading request bodies and validating them the way FastAPI (pydantic) answers: 422 with a list.
import type { IncomingMessage } from 'node:http';
import type { ValidationIssue } from './responses.ts';

const MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024;

export type ParsedBody = { ok: true; value: Record<string, unknown> } | { ok: false; issues: ValidationIssue[] };

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The whole body, or null when it is over the limit (drained anyway so the answer can go out). */
export async function readBody(req: IncomingMessage): Promise<Buffer | null> {
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

/** FastAPI parses the body as JSON when there is no content-type or a JSON one. */
export function parseJsonBody(req: IncomingMessage, raw: Buffer): ParsedBody {
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

export function fieldIssues(body: Record<string, unknown>, field: string, kind: 'string' | 'list', required: boolean): ValidationIssue[] {
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
