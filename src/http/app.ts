import { serveStatic } from '@hono/node-server/serve-static';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { getPath } from 'hono/utils/url';
import path from 'node:path';
import { registerAdminRoutes, type AdminDeps } from './admin/index.ts';
import type { AppEnv } from './app-env.ts';
import { handleDownload, type DownloadDeps } from './download-route.ts';
import { panelVendorDirs } from './panel-vendor.ts';
import { DOWNLOAD_CORS, DOWNLOAD_PREFLIGHT, DOWNLOAD_ROUTES, isDownloadPath } from './download-urls.ts';

export interface AppDeps {
  downloads: DownloadDeps;
  /** The operator's API, health, metrics. */
  admin: AdminDeps;
  /** Folder of the control panel, served under /static/. */
  publicDir: string;
}

/** No inline script or style anywhere in the panel, so the policy can forbid both. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The node's HTTP surface. Package downloads bypass Hono's Response path and write to the Node
 * response directly (piping a file stream is ~2× cheaper than a web ReadableStream).
 */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  // Set before the handler runs, as prepared headers that c.json/c.body/c.redirect copy into the
  // response they build. Touching c.res after next() instead forces the response into a real
  // web Response with a stream body and a header copy: measured 3x the CPU of /api/status.
  // Raw responses (downloads, SSE) never see these; they are written to the socket directly.
  app.use('*', async (c, next) => {
    c.header('x-content-type-options', 'nosniff');
    c.header('x-frame-options', 'DENY');
    c.header('referrer-policy', 'no-referrer');
    c.header('content-security-policy', CONTENT_SECURITY_POLICY);
    await next();
  });

  // GET and HEAD of the download URLs are answered ahead of this app (createDownloadListener) when
  // the target is spelled plainly. Spellings only the URL parser and router resolve to them (dot
  // segments, percent-encoded letters, absolute-form targets) arrive here and are answered the same.
  const download = async (c: { req: { param: (name: 'id') => string }; env: HttpBindings }) => {
    for (const [name, value] of Object.entries(DOWNLOAD_CORS)) c.env.outgoing.setHeader(name, value);
    await handleDownload(deps.downloads, c.req.param('id'), c.env.incoming, c.env.outgoing);
    return RESPONSE_ALREADY_SENT;
  };
  const preflight = () => new Response(null, { status: 204, headers: DOWNLOAD_PREFLIGHT });
  for (const route of DOWNLOAD_ROUTES) {
    app.on(['GET', 'HEAD'], route, download);
    app.on('OPTIONS', route, preflight);
    // A download URL exists: another method is 405 naming the ones it answers, not "no route".
    app.on(['POST', 'PUT', 'PATCH', 'DELETE'], route, (c) =>
      c.json({ error: `${c.req.method} is not allowed on a download URL: use GET or HEAD` }, 405, { allow: DOWNLOAD_PREFLIGHT['access-control-allow-methods']!, ...DOWNLOAD_CORS }),
    );
  }

  registerAdminRoutes(app, deps.admin);

  app.get('/', (c) => c.redirect('/static/index.html'));
  app.use('/static/*', async (c, next) => {
    // The panel changes with the program; revalidate rather than run a stale copy.
    c.header('cache-control', 'no-cache');
    await next();
  });
  for (const vendor of panelVendorDirs()) {
    const prefix = `/static/vendor/${vendor.name}`;
    app.use(`${prefix}/*`, serveStatic({ root: path.relative(process.cwd(), vendor.dir) || '.', rewriteRequestPath: (p) => p.slice(prefix.length) }));
  }
  app.use(
    '/static/*',
    serveStatic({ root: path.relative(process.cwd(), deps.publicDir) || '.', rewriteRequestPath: (p) => p.replace(/^\/static/, '') }),
  );

  // Hono answers HEAD by dispatching GET and copying the result into a new Response, which loses
  // the already-sent marker of a raw download answer: @hono/node-server then writes a second
  // answer (ERR_HTTP_HEADERS_SENT) on a socket that sendFile already answered. HEAD of a download
  // path is dispatched as GET instead; handleDownload reads the real method from the request. The
  // path is the one the router matches (getPath: percent-decoded as the routes see it).
  const dispatch = app.fetch;
  app.fetch = (request, env, executionCtx) => {
    if (request.method === 'HEAD' && isDownloadPath(getPath(request))) {
      return dispatch(new Request(request.url, { method: 'GET', headers: request.headers }), env, executionCtx);
    }
    return dispatch(request, env, executionCtx);
  };

  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    deps.downloads.logger.error(`http ${c.req.method} ${c.req.path}: ${error.message}`);
    return c.json({ error: 'internal error' }, 500);
  });
  return app;
}
