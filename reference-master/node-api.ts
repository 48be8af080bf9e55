// The node registry's HTTP face (/api/v1/nodes/...): FastAPI's validation, then the registry.
import type { IncomingMessage } from 'node:http';
import type { NodeRegistry } from './nodes.ts';
import { fieldIssues, isPlainObject, parseJsonBody } from './request-body.ts';
import {
  type PlannedResponse,
  internalServerError,
  json,
  pythonFloat,
  pythonTimestamp,
  validationError,
} from './responses.ts';

export function onRegister(nodes: NodeRegistry, req: IncomingMessage, rawBody: Buffer): PlannedResponse {
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
  nodes.register(nodeId, address, body['status'] as string);
  return json(200, { status: 'success', message: `Node ${nodeId} registered` });
}

export function onUnregister(nodes: NodeRegistry, req: IncomingMessage, rawBody: Buffer): PlannedResponse {
  const parsed = parseJsonBody(req, rawBody);
  if (!parsed.ok) return validationError(parsed.issues);
  const issues = fieldIssues(parsed.value, 'node_id', 'string', true);
  if (issues.length) return validationError(issues);
  const nodeId = parsed.value['node_id'] as string;
  if (!nodes.unregister(nodeId)) return json(404, { detail: `Node ${nodeId} not found` });
  return json(200, { status: 'success', message: `Node ${nodeId} unregistered` });
}

/** `onStored` runs for every heartbeat the registry stored (valid or breaking /list). */
export function onHeartbeat(nodes: NodeRegistry, req: IncomingMessage, rawBody: Buffer, onStored: () => void): PlannedResponse {
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

  const stored = nodes.heartbeat({
    nodeId,
    address,
    status: typeof body['status'] === 'string' ? body['status'] : 'online',
    activeMeetings,
    reportedSynced: reportedSynced as string[],
    body,
  });
  onStored();
  if (!stored) return internalServerError();
  return json(200, { status: 'success', timestamp: pythonTimestamp() });
}

export function onList(nodes: NodeRegistry): PlannedResponse {
  const items = nodes.listItems();
  if (!items) return internalServerError();
  return json(200, items.map((item) => ({
    ...item,
    last_seen: pythonFloat(item['last_seen'] as number),
    uptime: pythonFloat(item['uptime'] as number),
  })));
}

export function onAvailable(nodes: NodeRegistry): PlannedResponse {
  const addresses = nodes.onlineAddresses();
  return json(200, { count: addresses.length, nodes: addresses });
}
