import type { Hono } from 'hono';
import type { LogRing } from '../../log/log-ring.ts';
import type { AppEnv } from '../app-env.ts';

/** GET /api/logs?lines=N: the last N lines (1–1000, default 200), oldest first. */
export function registerLogRoutes(app: Hono<AppEnv>, ring: LogRing): void {
  app.get('/api/logs', (c) => {
    const raw = c.req.query('lines');
    const max = Math.min(1000, ring.capacity);
    let count = 200;
    if (raw !== undefined) {
      if (!/^\d{1,7}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
        const message = `must be an integer from 1 to ${max}`;
        return c.json({ error: `lines ${message}`, fields: { lines: message } }, 400);
      }
      count = Number(raw);
    }
    const lines = ring.recent(count);
    return c.json({ lines: lines.map((line) => line.text), last_seq: lines.at(-1)?.seq ?? null });
  });
}
