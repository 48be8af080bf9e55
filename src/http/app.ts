import { serveStatic } from '@hono/node-server/serve-static';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import path from 'node:path';
import { handleDownload, type DownloadDeps } from './download-route.ts';

export interface AppDeps {
  downloads: DownloadDeps;
  /** The reference node's /api/status document (and more). */
  status: () => unknown;
  /** Folder of the control panel, served under /static/. */
  publicDir: string;
}

export type AppEnv = { Bindings: HttpBindings };

/**
 * The node's HTTP surface. Package downloads bypass Hono's Response path and write to the Node
 * response directly (piping a file stream is ~2× cheaper than a web ReadableStream).
 */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  const download = async (c: { req: { param: (name: 'id') => string }; env: HttpBindings }) => {
    await handleDownload(deps.downloads, c.req.param('id'), c.env.incoming, c.env.outgoing);
    return RESPONSE_ALREADY_SENT;
  };
  // The tablets' URL on the master (which redirects here) and the reference node's own alias.
  app.on(['GET', 'HEAD'], '/api/v1/meetings/:id/download-package', download);
  app.on(['GET', 'HEAD'], '/api/meetings/:id/download', download);

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/api/status', (c) => c.json(deps.status() as object));

  app.get('/', (c) => c.redirect('/static/index.html'));
  app.use(
    '/static/*',
    serveStatic({ root: path.relative(process.cwd(), deps.publicDir) || '.', rewriteRequestPath: (p) => p.replace(/^\/static/, '') }),
  );

  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    deps.downloads.logger.error(`http ${c.req.method} ${c.req.path}: ${error.message}`);
    return c.json({ error: 'internal error' }, 500);
  });
  return app;
}
