import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Logger } from '../../log/logger.ts';
import type { AppEnv } from '../app-env.ts';
import { isDownloadPath, isPublicPath } from '../download-urls.ts';
import { AdminAuth } from './auth.ts';
import { registerConfigRoutes, type ConfigRoutesDeps } from './config-routes.ts';
import { registerDiagnosticsRoutes, type DiagnosticsDeps } from './diagnostics.ts';
import type { AdminEventHub } from './events.ts';
import { registerHealthRoutes, type HealthDeps } from './health.ts';
import type { LogRing } from '../../log/log-ring.ts';
import { registerLogRoutes } from './logs.ts';
import { registerMaintenanceRoutes, type MaintenanceRoutesDeps } from './maintenance-routes.ts';
import { registerServiceRoutes, type ServiceRoutesDeps } from './service-routes.ts';
import type { TrafficHistory } from './traffic-history.ts';

export interface AdminDeps {
  logger: Logger;
  /** The admin token in force now. */
  token: () => string;
  config: ConfigRoutesDeps;
  service: ServiceRoutesDeps;
  events: AdminEventHub;
  logs: LogRing;
  diagnostics: DiagnosticsDeps;
  health: Omit<HealthDeps, 'auth'>;
  /** The bytes-per-second and holders history of the panel's chart (GET /api/traffic); absent: 404. */
  traffic?: Pick<TrafficHistory, 'intervalMs' | 'samples'>;
  /** Storage upkeep on demand (the scrub); absent: no such routes. */
  maintenance?: MaintenanceRoutesDeps;
  /** Request bodies above this answer 413 (admin bodies are small JSON documents). */
  maxBodyBytes?: number;
  /** Failed-auth limit per client address and window (tests shorten the window). */
  authLimit?: { maxFailures: number; windowMs: number };
}

/**
 * The operator's API: bearer auth on every /api/* route except downloads and the build-identity route (public: tablets and sibling nodes carry no token), a body-size limit on
 * writes, then config, service, status, sync, events, logs and diagnostics. /healthz, /readyz and
 * /metrics are registered here too (public; /metrics private if the config says so).
 */
export function registerAdminRoutes(app: Hono<AppEnv>, deps: AdminDeps): AdminAuth {
  const auth = new AdminAuth({ token: deps.token, logger: deps.logger, ...deps.authLimit });
  registerHealthRoutes(app, { ...deps.health, auth });

  app.use('/api/*', auth.middleware(isPublicPath));
  app.use('/api/*', async (c, next) => {
    // A default the route may override with its own c.header (see app.ts for why before next()).
    c.header('cache-control', 'no-store');
    await next();
  });
  const maxSize = deps.maxBodyBytes ?? 64 * 1024;
  const limit = bodyLimit({
    maxSize,
    onError: (c) => c.json({ error: `request body larger than ${maxSize} bytes`, fields: {} }, 413),
  });
  app.on(['POST', 'PUT', 'PATCH', 'DELETE'], '/api/*', (c, next) => (isDownloadPath(c.req.path) ? next() : limit(c, next)));

  registerConfigRoutes(app, deps.config);
  registerServiceRoutes(app, deps.service);
  registerLogRoutes(app, deps.logs);
  registerDiagnosticsRoutes(app, deps.diagnostics);
  if (deps.maintenance) registerMaintenanceRoutes(app, deps.maintenance);
  const traffic = deps.traffic;
  if (traffic) app.get('/api/traffic', (c) => c.json({ interval_ms: traffic.intervalMs, samples: traffic.samples() }));
  // HEAD of the event stream: its headers only (Hono would run the GET and write the stream).
  app.on('HEAD', '/api/events', (c) => c.body(null, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' }));
  app.get('/api/events', (c) => {
    deps.events.attach(c.env.outgoing);
    return RESPONSE_ALREADY_SENT;
  });
  return auth;
}
