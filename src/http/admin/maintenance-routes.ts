import type { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';

export interface MaintenanceRoutesDeps {
  /** Starts a scrub (or joins the one running); resolves with its report once it ends. */
  scrubNow: () => Promise<unknown>;
  /** Whether a scrub is running now. */
  scrubbing: () => boolean;
  /** The scrub part of /api/status (schedule, running, last). */
  scrubStatus: () => object;
}

/**
 * POST /api/maintenance/scrub: re-hash every stored package now. Answers 202 at once (a scrub of
 * a full disk takes minutes; /api/status shows its progress and result); `?wait=1` answers when
 * it ends, with its report.
 */
export function registerMaintenanceRoutes(app: Hono<AppEnv>, deps: MaintenanceRoutesDeps): void {
  app.post('/api/maintenance/scrub', async (c) => {
    const already = deps.scrubbing();
    const done = deps.scrubNow();
    const wait = c.req.query('wait');
    if (wait === '1' || wait === 'true') {
      await done;
      return c.json({ status: 'success', message: 'scrub finished', scrub: deps.scrubStatus() });
    }
    void done.catch(() => {});
    return c.json({ status: 'accepted', message: already ? 'a scrub is already running' : 'scrub started', scrub: deps.scrubStatus() }, 202);
  });
}
