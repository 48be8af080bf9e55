/**
 * The download URLs from the one route table: both URLs answer GET, HEAD and the CORS preflight,
 * whether the raw listener takes the request (plain spelling) or the app does (spellings only the
 * URL parser resolves, such as dot segments).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { test } from 'node:test';
import { startAdminNode } from './admin-helpers.ts';
import { removeDir, startMaster, waitFor } from './helpers.ts';

function request(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    // `path` is sent as written: a URL string would have its dot segments removed by the client.
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('GET, HEAD and OPTIONS of both download URLs, plainly spelled or not', async (t) => {
  const m = await startMaster();
  t.after(() => m.close());
  const n = await startAdminNode(m.port);
  t.after(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  m.master.addMeeting({ id: 'u1', title: 'U1', packageSizeBytes: 32 * 1024 });
  await m.master.startMeeting('u1');
  await n.node.syncNow();
  await waitFor('package u1 held', () => n.node.sync.isServable('u1'));
  const port = Number(new URL(n.url).port);
  const pkg = n.node.store.get('u1');
  assert.ok(pkg);

  const spellings = [
    '/api/v1/meetings/u1/download-package',
    '/api/meetings/u1/download',
    '/api/v1/meetings/x/../u1/download-package',
    '/api/meetings/./u1/download',
  ];
  for (const path of spellings) {
    const get = await request(port, 'GET', path);
    assert.equal(get.status, 200, `GET ${path}`);
    assert.equal(createHash('sha256').update(get.body).digest('hex'), pkg.sha256, `GET ${path}`);
    assert.equal(get.headers['access-control-allow-origin'], '*', `GET ${path}`);

    const head = await request(port, 'HEAD', path);
    assert.equal(head.status, 200, `HEAD ${path}`);
    assert.equal(head.headers['content-length'], String(pkg.size), `HEAD ${path}`);
    assert.equal(head.body.length, 0, `HEAD ${path}`);

    const preflight = await request(port, 'OPTIONS', path, { origin: 'http://tablet.example', 'access-control-request-method': 'GET' });
    assert.equal(preflight.status, 204, `OPTIONS ${path}`);
    assert.equal(preflight.headers['access-control-allow-origin'], '*', `OPTIONS ${path}`);
    assert.match(String(preflight.headers['access-control-allow-methods']), /HEAD/, `OPTIONS ${path}`);
  }
  // An invalid id is refused with 400 by either path; other methods of a download URL need no token and get 405 with Allow.
  assert.equal((await request(port, 'GET', '/api/v1/meetings/a.b/download-package')).status, 400);
  assert.equal((await request(port, 'GET', '/api/v1/meetings/x/../a.b/download-package')).status, 400);
  const post = await request(port, 'POST', '/api/meetings/u1/download');
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD, OPTIONS');
  assert.match(JSON.parse(post.body.toString('utf8')).error, /POST is not allowed on a download URL/);
  assert.equal((await request(port, 'GET', '/api/status')).status, 401, 'admin routes still need the token');
});
