import type { ServerResponse } from 'node:http';

/**
 * A JSON answer, never cached. A response whose headers already went out (a transfer cut short)
 * cannot carry one: its socket is destroyed, so the client sees a failure, not a truncated body.
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}
