/**
 * The admin API's door: no token, a wrong token, the token in the query string all answer 401 on
 * every admin route; wrong tokens of any length or prefix get byte-identical answers (and are
 * compared as SHA-256 digests with timingSafeEqual; timings are reported, not asserted); failed
 * attempts are rate-limited per address and logged without the token's value; downloads stay
 * public.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { cleanupStack, packageUrl, removeDir, startMaster, startNode, waitFor, type TestNode } from './helpers.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  ms: number;
}

function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = httpRequest(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const answer = () => ({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), ms: Number(process.hrtime.bigint() - started) / 1e6 });
      // The event stream never ends: its status and headers are the answer.
      if (String(res.headers['content-type']).startsWith('text/event-stream')) {
        resolve(answer());
        res.destroy();
        return;
      }
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', () => {});
      res.on('close', () => resolve(answer()));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Admin routes, as method and path, with a body where one is needed. */
const ADMIN_ROUTES: Array<{ method: string; path: string; body?: string }> = [
  { method: 'GET', path: '/api/status' },
  { method: 'GET', path: '/api/config' },
  { method: 'GET', path: '/api/config/schema' },
  { method: 'POST', path: '/api/config', body: '{"heartbeat":{"interval":300}}' },
  { method: 'POST', path: '/api/config/heartbeat', body: '300' },
  { method: 'POST', path: '/api/sync' },
  { method: 'POST', path: '/api/service/stop' },
  { method: 'POST', path: '/api/service/start' },
  { method: 'GET', path: '/api/logs' },
  { method: 'GET', path: '/api/diagnostics' },
  { method: 'GET', path: '/api/events' },
];

async function authNode(t: Parameters<typeof cleanupStack>[0], authLimit = { maxFailures: 1_000_000, windowMs: 60_000 }): Promise<{ n: TestNode; token: string }> {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Public' });
  await m.master.startMeeting('m1');
  const n = await startNode(m.port, { config: { syncInterval: 3600, heartbeat: { interval: 300 } }, node: { policy: { authLimit } } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await waitFor('m1 synced', () => n.node.sync.isServable('m1'), 15_000);
  return { n, token: n.node.adminToken };
}

function assertNoSecretLogged(n: TestNode, secrets: string[]): void {
  for (const secret of secrets) {
    const line = n.logger.lines.find((l) => l.includes(secret));
    assert.equal(line, undefined, `a log line carries a token value: ${line?.slice(0, 200)}`);
  }
}

test('no token, a wrong token, the token in the query string: 401 on every admin route; the right token passes; downloads stay public', async (t) => {
  const { n, token } = await authNode(t);
  const wrong = `wrong-${randomBytes(12).toString('hex')}`;
  for (const route of ADMIN_ROUTES) {
    const url = `${n.url}${route.path}`;
    const what = `${route.method} ${route.path}`;
    const none = await call(url, { method: route.method, body: route.body, headers: { 'content-type': 'application/json' } });
    assert.equal(none.status, 401, `${what} without a token`);
    assert.match(String(none.headers['www-authenticate']), /^Bearer/, `${what}: WWW-Authenticate`);
    assert.equal(none.headers['cache-control'], 'no-store');

    const bad = await call(url, { method: route.method, body: route.body, headers: { authorization: `Bearer ${wrong}`, 'content-type': 'application/json' } });
    assert.equal(bad.status, 401, `${what} with a wrong token`);

    for (const name of ['token', 'access_token', 'adminToken', 'auth']) {
      const inQuery = await call(`${url}?${name}=${encodeURIComponent(token)}`, { method: route.method, body: route.body, headers: { 'content-type': 'application/json' } });
      assert.equal(inQuery.status, 401, `${what} with ?${name}=<the right token>`);
      assert.match(inQuery.body, /Authorization header/, `${what}: says where the token goes`);
    }
    for (const header of [`Basic ${Buffer.from(`admin:${token}`).toString('base64')}`, token, `Bearer  `, `Bearer ${token} extra`, `Bearer ${token.slice(0, -1)}`, `Bearer ${token}x`]) {
      const odd = await call(url, { method: route.method, body: route.body, headers: { authorization: header, 'content-type': 'application/json' } });
      assert.equal(odd.status, 401, `${what} with Authorization: ${header.replace(token, '<token>')}`);
    }
  }
  // The right token passes (the SSE route streams: its status is enough).
  for (const route of ADMIN_ROUTES.filter((r) => r.path !== '/api/service/stop')) {
    const ok = await call(`${n.url}${route.path}`, { method: route.method, body: route.body, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
    assert.ok(ok.status < 400 || (route.path === '/api/sync' && ok.status === 502), `${route.method} ${route.path} with the token answered ${ok.status}: ${ok.body.slice(0, 200)}`);
  }
  const download = await call(packageUrl(n.url, 'm1'));
  assert.equal(download.status, 200, 'downloads need no token');
  assertNoSecretLogged(n, [token, wrong]);
});

test('wrong tokens of any length or prefix get the same answer; timings are reported', async (t) => {
  const { n, token } = await authNode(t);
  const candidates = {
    short: 'x',
    'same length': 'y'.repeat(token.length),
    'right prefix': `${token.slice(0, token.length - 1)}z`,
    'right token + 1 char': `${token}z`,
    long: 'z'.repeat(200),
  };
  const answers = new Map<string, Answer[]>();
  for (let round = 0; round < 30; round++) {
    for (const [name, candidate] of Object.entries(candidates)) {
      const answer = await call(`${n.url}/api/status`, { headers: { authorization: `Bearer ${candidate}` } });
      answers.set(name, [...(answers.get(name) ?? []), answer]);
    }
  }
  const reference = answers.get('short')![0]!;
  for (const [name, list] of answers) {
    for (const answer of list) {
      assert.equal(answer.status, 401, name);
      assert.equal(answer.body, reference.body, `${name}: same body`);
      const { date: _d, ...headers } = answer.headers;
      const { date: _r, ...referenceHeaders } = reference.headers;
      assert.deepEqual(headers, referenceHeaders, `${name}: same headers`);
    }
  }
  const median = (list: Answer[]) => [...list.map((a) => a.ms)].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
  t.diagnostic(`median ms per wrong-token kind: ${[...answers].map(([name, list]) => `${name} ${median(list).toFixed(2)}`).join(', ')}`);
  assertNoSecretLogged(n, [token, ...Object.values(candidates).filter((c) => c.length >= 8)]);
});

test('failed attempts are rate-limited per address (429 + Retry-After), logged without the token, and the limit lifts after its window', async (t) => {
  const { n, token } = await authNode(t, { maxFailures: 5, windowMs: 1_500 });
  const tried: string[] = [];
  for (let i = 0; i < 5; i++) {
    const guess = `guess-${randomBytes(10).toString('hex')}`;
    tried.push(guess);
    assert.equal((await call(`${n.url}/api/config`, { headers: { authorization: `Bearer ${guess}` } })).status, 401, `attempt ${i + 1}`);
  }
  const blocked = await call(`${n.url}/api/config`, { headers: { authorization: 'Bearer one-more-guess-123' } });
  assert.equal(blocked.status, 429);
  assert.ok(Number(blocked.headers['retry-after']) >= 1, 'Retry-After says when to come back');
  // While blocked, wrong tokens keep getting 429; the right token is always accepted (issue 14:
  // a neighbour's guesses must not lock the operator out).
  assert.equal((await call(`${n.url}/api/config`, { headers: { authorization: 'Bearer yet-another-guess-456' } })).status, 429);
  assert.equal((await call(`${n.url}/api/config`, { headers: { authorization: `Bearer ${token}` } })).status, 200, 'the right token passes while blocked');
  // Downloads are not behind the limit.
  assert.equal((await call(packageUrl(n.url, 'm1'))).status, 200);

  const rejections = n.logger.lines.filter((line) => line.includes('admin API: rejected'));
  assert.ok(rejections.length >= 5, 'every failed attempt is logged');
  assert.ok(rejections.every((line) => /wrong token|no token|token in the URL/.test(line)), 'with its reason');
  assert.equal(n.logger.lines.filter((line) => /blocked for \d+ s after 5 failed attempts/.test(line)).length, 1, 'the block is logged once');
  assertNoSecretLogged(n, [token, ...tried, 'one-more-guess-123', 'yet-another-guess-456']);

  await sleep(1_600);
  assert.equal((await call(`${n.url}/api/config`, { headers: { authorization: 'Bearer after-the-window-789' } })).status, 401, 'the limit lifts after its window');
});

test('requests without a token get a plain 401, are not counted, and never lock out the right token', async (t) => {
  const { n, token } = await authNode(t, { maxFailures: 3, windowMs: 60_000 });
  // A panel opened before signing in, a monitoring probe: many requests without a token.
  for (let i = 0; i < 20; i++) {
    const none = await call(`${n.url}/api/status`);
    assert.equal(none.status, 401, `request ${i + 1} without a token`);
    assert.equal(none.headers['retry-after'], undefined, 'no Retry-After: nothing is blocked');
  }
  assert.equal((await call(`${n.url}/api/status?token=x`)).status, 401, 'a token in the URL is not a guess either');
  assert.equal((await call(`${n.url}/api/status`, { headers: { authorization: `Bearer ${token}` } })).status, 200, 'the right token passes');
  // Wrong tokens still count: the cap on guesses holds.
  for (let i = 0; i < 3; i++) {
    assert.equal((await call(`${n.url}/api/status`, { headers: { authorization: `Bearer wrong-guess-${i}-abcdef` } })).status, 401, `guess ${i + 1}`);
  }
  assert.equal((await call(`${n.url}/api/status`, { headers: { authorization: 'Bearer wrong-guess-4-abcdef' } })).status, 429, 'past the cap, guesses get 429');
  assert.equal((await call(`${n.url}/api/status`)).status, 401, 'no token while guesses are blocked: still a plain 401');
  assert.equal((await call(`${n.url}/api/status`, { headers: { authorization: `Bearer ${token}` } })).status, 200, 'the right token passes while guesses are blocked');
  assertNoSecretLogged(n, [token]);
});
