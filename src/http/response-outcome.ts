/**
 * How a file response ends, for sendFile (complete packages) and tailDownload (packages still
 * downloading) alike: the outcome they report, the first failure that decides it, the idle timeout
 * that is one such failure, and the wait for the last byte to be handed to the OS.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Why a response did not complete. `client-closed`: the tablet went away. `idle-timeout`: it
 * stopped taking bytes for idleTimeoutMs. `server-error`: reading the file failed, the file was
 * shorter than announced, or onBytes threw; `error` then says which.
 */
export type SendAbortReason = 'client-closed' | 'idle-timeout' | 'server-error';

export interface SendResult {
  status: number;
  /** Body bytes handed to the response (not counting headers). */
  bytesSent: number;
  /** True when the whole response was handed to the OS; false after any abort. */
  completed: boolean;
  abortReason?: SendAbortReason;
  /** Only for abortReason `server-error`. */
  error?: Error;
}

/** The outcome recorded by whichever failure happens first; later ones are consequences. */
export class AbortState {
  reason: SendAbortReason | undefined;
  error: Error | undefined;

  record(reason: SendAbortReason, error?: Error): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.error = error;
  }

  result(status: number, bytesSent: number, completed: boolean): SendResult {
    if (completed && this.reason === undefined) return { status, bytesSent, completed };
    const result: SendResult = { status, bytesSent, completed: false, abortReason: this.reason ?? 'client-closed' };
    if (this.error) result.error = this.error;
    return result;
  }
}

/**
 * Waits until `res` owns its connection. A request pipelined behind another on a keep-alive
 * connection gets a response Node queues until the one before it finishes; nothing written to it
 * leaves Node meanwhile, and if the connection closes first (the response before it cut, or its
 * body handed off: body-handoff.ts) Node neither assigns it nor emits its 'close', so a sender
 * waiting on it would wait for ever, holding its file. False when the connection closed first.
 */
export function connectionTurn(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (res.socket) return Promise.resolve(true);
  const connection = req.socket;
  if (!connection || connection.destroyed || res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onTurn = () => {
      connection.off('close', onClose);
      resolve(true);
    };
    const onClose = () => {
      res.off('socket', onTurn);
      resolve(false);
    };
    res.once('socket', onTurn);
    connection.once('close', onClose);
  });
}

/**
 * res.setTimeout arms the socket's inactivity timer. While the client does not read, the kernel
 * buffers fill, the pending socket write never completes and no new write is issued (the pump
 * waits for it), so the timer runs out and we destroy the socket; without
 * this, Node 20 never times out a response that is stuck writing. A listener on the response also
 * stops Node from destroying the socket on its own, so the destroy must happen here.
 * The socket keeps the timeout after the response: on a keep-alive connection Node replaces it
 * with keepAliveTimeout when the response finishes; otherwise it bounds the idle connection too,
 * which suits dead tablets.
 */
export function armIdleTimeout(res: ServerResponse, idleTimeoutMs: number, abort: AbortState): () => void {
  const onIdle = (): void => {
    abort.record('idle-timeout');
    res.destroy();
  };
  res.setTimeout(idleTimeoutMs, onIdle);
  return () => {
    res.removeListener('timeout', onIdle);
  };
}

export function responseSettled(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.writableFinished) return resolve(true);
    if (res.destroyed) return resolve(false);
    res.once('finish', () => resolve(true));
    res.once('close', () => resolve(res.writableFinished));
  });
}
