// The admin API (not on the real master): tests, the demo and benchmarks drive the reference
// master over HTTP with it. It only calls the public ReferenceMaster methods.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { deliver, type DeliveryOptions } from './delivery.ts';
import { faultProblem, isFaultRoute } from './faults.ts';
import { parseMeetingTime } from './local-time.ts';
import type { PackageDocument } from './packages.ts';
import { isPlainObject } from './request-body.ts';
import { json } from './responses.ts';
import { safeDecode } from './routes.ts';
import { FAULT_ROUTES, type Fault, type ReferenceMaster } from './types.ts';

const TIME_FORMS = 'time must be "YYYY-MM-DDTHH:MM" (master local time) or epoch milliseconds';
const DOCUMENTS_FORM = 'documents must be [{"name": string, "content"?: string}]';

export async function handleAdmin(
  master: ReferenceMaster,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  rawBody: Buffer,
  delivery: DeliveryOptions,
): Promise<void> {
  const method = req.method ?? 'GET';
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
  const reply = (status: number, value: unknown) => deliver(req, res, json(status, value), undefined, delivery);
  const fail = (status: number, message: string) => reply(status, { detail: message });

  try {
    if (resource === 'meetings' && parts.length === 2) {
      if (method === 'GET') return void (await reply(200, master.meetings()));
      if (method !== 'POST') return void (await fail(405, 'Method Not Allowed'));
      const input = body();
      if (!input || typeof input['id'] !== 'string' || typeof input['title'] !== 'string') {
        return void (await fail(400, 'expected {"id": string, "title": string, "intro"?: string, "time"?: string, "packageSizeBytes"?: number}'));
      }
      if (master.meeting(input['id'])) return void (await fail(409, `meeting ${input['id']} already exists`));
      const documents = parseAdminDocuments(input['documents']);
      if (documents === null) return void (await fail(400, DOCUMENTS_FORM));
      const size = input['packageSizeBytes'];
      if (size !== undefined && (typeof size !== 'number' || !Number.isFinite(size) || size < 0)) {
        return void (await fail(400, 'packageSizeBytes must be a non-negative number'));
      }
      const intro = input['intro'];
      if (intro !== undefined && typeof intro !== 'string') return void (await fail(400, 'intro must be a string'));
      const time = input['time'];
      if (time !== undefined && parseMeetingTime(time) === null) return void (await fail(400, TIME_FORMS));
      const view = master.addMeeting({
        id: input['id'],
        title: input['title'],
        ...(typeof intro === 'string' ? { intro } : {}),
        ...(time !== undefined ? { time: time as string | number } : {}),
        ...(documents ? { documents } : {}),
        ...(typeof size === 'number' ? { packageSizeBytes: size } : {}),
      });
      return void (await reply(201, view));
    }
    if (resource === 'meetings' && id !== undefined && parts.length === 3 && method === 'GET') {
      const view = master.meeting(id);
      return void (await (view ? reply(200, view) : fail(404, `meeting ${id} does not exist`)));
    }
    if (resource === 'meetings' && id !== undefined && parts.length === 4 && action !== undefined && MEETING_ACTIONS.has(action)) {
      if (method !== 'POST') return void (await fail(405, 'Method Not Allowed'));
      if (!master.meeting(id)) return void (await fail(404, `meeting ${id} does not exist`));
      if (action === 'start') return void (await reply(200, await master.startMeeting(id)));
      if (action === 'end') return void (await reply(200, await master.endMeeting(id)));
      if (action === 'delete') {
        await master.deleteMeeting(id);
        return void (await reply(200, { ok: true }));
      }
      const input = body();
      if (!input) return void (await fail(400, 'expected a JSON object'));
      if (action === 'time') {
        const time = input['time'];
        if (parseMeetingTime(time) === null) return void (await fail(400, TIME_FORMS));
        return void (await reply(200, master.setMeetingTime(id, time as string | number)));
      }
      const documents = parseAdminDocuments(input['documents']);
      if (!documents) return void (await fail(400, DOCUMENTS_FORM));
      return void (await reply(200, master.setDocuments(id, documents)));
    }
    if (resource === 'stats' && parts.length === 2 && method === 'GET') return void (await reply(200, master.stats()));
    if (resource === 'stats' && id === 'reset' && parts.length === 3 && method === 'POST') {
      master.resetStats();
      return void (await reply(200, { ok: true }));
    }
    if (resource === 'nodes' && parts.length === 2 && method === 'GET') return void (await reply(200, master.nodes()));
    if (resource === 'token' && parts.length === 2 && method === 'GET') return void (await reply(200, { token: master.token() }));
    if (resource === 'faults' && parts.length === 2) {
      if (method === 'GET') return void (await reply(200, master.faults()));
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
      master.setFault(route, fault as Fault | null);
      return void (await reply(200, master.faults()));
    }
    await fail(404, 'Not Found');
  } catch (error) {
    await fail(500, error instanceof Error ? error.message : String(error));
  }
}

const MEETING_ACTIONS = new Set(['start', 'end', 'delete', 'time', 'documents']);

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
