// Writes a planned response on the wire, exactly: Content-Length for buffers, one HTTP chunk per
// write for chunked bodies, optional pacing, and body faults (stall, reset, cut before the 0-chunk).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PlannedResponse } from './responses.ts';
import type { SharedRate } from './shared-rate.ts';
import type { BodyFault } from './types.ts';

export type DeliveryOutcome = 'completed' | 'aborted' | 'faulted';

export interface DeliveryOptions {
  /** Bytes per HTTP chunk when a Buffer body is cut by a fault. */
  chunkSize: number;
  /** Wait after the partial body left the socket before a reset or cut. */
  faultFlushDelayMs: number;
  /** This response's own pace (bytes/s); null = unpaced. */
  throttle?: number | null;
  /** A rate shared with other responses. */
  sharedRate?: SharedRate | null;
  onBytes?: (bytes: number) => void;
}

/**
 * Writes a planned response. A body fault cuts it after `afterBytes` body bytes (or after the
 * whole body when it is shorter, which for a chunked body still omits the terminator).
 */
export async function deliver(
  req: IncomingMessage,
  res: ServerResponse,
  plan: PlannedResponse,
  fault: BodyFault | undefined,
  options: DeliveryOptions,
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

  const chunks = typeof plan.body === 'function' ? plan.body() : bufferChunks(plan.body, options.chunkSize);
  const rate = options.throttle ?? null;
  const shared = options.sharedRate ?? null;
  const startedAt = performance.now();
  let sent = 0;
  try {
    for await (const chunk of chunks) {
      if (res.destroyed) return 'aborted';
      if (shared) {
        const wait = shared.reserve(chunk.length);
        if (wait >= 1) await sleep(wait);
        if (res.destroyed) return 'aborted';
      }
      if (fault && sent + chunk.length >= fault.afterBytes) {
        const piece = chunk.subarray(0, fault.afterBytes - sent);
        if (piece.length > 0) {
          res.write(piece);
          options.onBytes?.(piece.length);
        }
        await applyBodyFault(res, fault, options.faultFlushDelayMs);
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
    await applyBodyFault(res, fault, options.faultFlushDelayMs);
    return 'faulted';
  }
  if (res.destroyed) return 'aborted';
  res.end();
  return (await finished(res)) ? 'completed' : 'aborted';
}

async function applyBodyFault(res: ServerResponse, fault: BodyFault, flushDelayMs: number): Promise<void> {
  res.flushHeaders();
  const socket = res.socket;
  if (fault.kind === 'stallBody' || !socket) {
    await closed(res);
    return;
  }
  await writtenOut(res, socket);
  await sleep(flushDelayMs);
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

async function* bufferChunks(buffer: Buffer, chunkSize: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < buffer.length; offset += chunkSize) {
    yield buffer.subarray(offset, Math.min(offset + chunkSize, buffer.length));
  }
}

export function closed(res: ServerResponse): Promise<void> {
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
