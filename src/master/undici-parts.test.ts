import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import * as undici from 'undici';
import { Agent, requestThrough } from './undici-parts.ts';

test("undici's parts are the index's own", () => {
  assert.equal(Agent, undici.Agent, 'the Agent class the index exports');
  const agent = new Agent();
  assert.ok(agent instanceof undici.Dispatcher);
  void agent.close();
});

test('a request through the Agent sends the method, path, headers and body, and reads the answer', async () => {
  const seen: Array<{ method?: string; url?: string; type?: string; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, type: req.headers['content-type'], body });
      res.writeHead(201, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const agent = new Agent();
  try {
    const { port } = server.address() as AddressInfo;
    const response = await requestThrough(agent, {
      origin: `http://127.0.0.1:${port}`,
      path: '/api/v1/nodes/register?x=1',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"node_id":"n1"}',
    });
    assert.equal(response.statusCode, 201);
    assert.deepEqual(await response.body.json(), { ok: true });
    assert.deepEqual(seen, [{ method: 'POST', url: '/api/v1/nodes/register?x=1', type: 'application/json', body: '{"node_id":"n1"}' }]);
    await assert.rejects(requestThrough(agent, { origin: `http://127.0.0.1:${port}`, path: '/', method: 'GET', signal: AbortSignal.abort() }), { name: 'AbortError' });
  } finally {
    await agent.close();
    server.close();
  }
});
