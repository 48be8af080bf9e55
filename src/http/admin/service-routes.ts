import type { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';

export interface ServiceRoutesDeps {
  serving: () => boolean;
  /** Unregisters, pauses polling and heartbeats; downloads answer 503 until start. */
  stop: () => Promise<void>;
  /** Registers and resumes polling and heartbeats at once. */
  start: () => Promise<void>;
  /** Polls the master and reconciles now; resolves with the poll's outcome. */
  syncNow: () => Promise<{ ok: boolean; error: string | null }>;
  status: () => Promise<object>;
}

/**
 * Shares one value among the callers of one event-loop turn: requests that arrived together get
 * the same status document, built once after the first of them arrived, so no caller ever sees
 * state older than its request. A panel polling alone pays one build per request, as before; 64
 * clients polling at once pay one build per turn instead of one each.
 */
export class PerTurn<T> {
  #pending: Promise<T> | null = null;

  get(build: () => Promise<T>): Promise<T> {
    if (this.#pending) return this.#pending;
    const pending = build();
    this.#pending = pending;
    setImmediate(() => {
      if (this.#pending === pending) this.#pending = null;
    });
    return pending;
  }
}

export function registerServiceRoutes(app: Hono<AppEnv>, deps: ServiceRoutesDeps): void {
  const statusText = new PerTurn<string>();
  app.post('/api/service/stop', async (c) => {
    const wasRunning = deps.serving();
    await deps.stop();
    return c.json({ status: 'success', message: wasRunning ? 'service stopped' : 'service already stopped', running: deps.serving() });
  });

  app.post('/api/service/start', async (c) => {
    const wasRunning = deps.serving();
    await deps.start();
    return c.json({ status: 'success', message: wasRunning ? 'service already running' : 'service started', running: deps.serving() });
  });

  app.get('/api/status', async (c) => {
    const text = await statusText.get(async () => JSON.stringify(await deps.status()));
    return c.body(text, 200, { 'content-type': 'application/json' });
  });

  app.post('/api/sync', async (c) => {
    if (!deps.serving()) return c.json({ error: 'the service is stopped: start it before syncing' }, 409);
    const outcome = await deps.syncNow();
    if (!outcome.ok) return c.json({ error: `poll of the master failed: ${outcome.error ?? 'unknown error'}` }, 502);
    return c.json({ status: 'success', message: 'polled the master and reconciled' });
  });
}
