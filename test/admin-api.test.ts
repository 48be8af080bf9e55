// The operator's API (issue 3): auth, config with live apply, service stop/start, status, sync,
// events, logs, diagnostics, health and metrics, against a real node and the reference master.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { readEnvironment } from '../src/config/cli-options.ts';
import { EdgeNode } from '../src/edge-node.ts';
import { ConfigError } from '../src/config/config-store.ts';
import { ADMIN_TOKEN, api, masterCount, openEvents, postChunked, startAdminNode, unzipEntries } from './admin-helpers.ts';
import { fetchRaw, memoryLogger, packageUrl, removeDir, startMaster, tempDir, testConfig, waitFor, type TestMaster, type TestNode } from './helpers.ts';

/** Runs the cleanups after the test, last first, each even if an earlier one failed. */
function cleanups(t: TestContext): (fn: () => Promise<unknown>) => void {
  const steps: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const step of steps.reverse()) await step().catch(() => {});
  });
  return (fn) => steps.push(fn);
}

async function setup(t: TestContext, options: Parameters<typeof startAdminNode>[1] = {}, masterOptions: Parameters<typeof startMaster>[0] = {}) {
  const defer = cleanups(t);
  const m = await startMaster(masterOptions);
  defer(() => m.close());
  const n = await startAdminNode(m.port, options);
  defer(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  await waitFor('first heartbeat', () => m.master.nodes().some((node) => node.heartbeats > 0));
  return { m, n, defer };
}

/** Starts a meeting on the master and waits until the node holds its package. */
async function syncedMeeting(m: TestMaster, n: TestNode, id: string, packageSizeBytes = 64 * 1024): Promise<void> {
  m.master.addMeeting({ id, title: `Meeting ${id}`, packageSizeBytes });
  await m.master.startMeeting(id);
  await n.node.syncNow();
  await waitFor(`package ${id} held`, () => n.node.sync.isServable(id));
}

/** Bytes of the package the master serves for an active meeting (its zip is about, not exactly, the asked size). */
function packageSize(m: TestMaster, id: string): number {
  const size = m.master.meeting(id)?.package?.size;
  assert.ok(size, `meeting ${id} has a package`);
  return size;
}

const ADMIN_ROUTES: Array<[string, string]> = [
  ['GET', '/api/status'],
  ['GET', '/api/config'],
  ['GET', '/api/config/schema'],
  ['POST', '/api/config'],
  ['POST', '/api/config/heartbeat'],
  ['POST', '/api/service/stop'],
  ['POST', '/api/service/start'],
  ['POST', '/api/sync'],
  ['GET', '/api/events'],
  ['GET', '/api/logs'],
  ['GET', '/api/diagnostics'],
  ['GET', '/api/no-such-route'],
];

describe('admin API authentication', () => {
  test('every admin route answers 401 JSON without the token, with a wrong one, and with the token in the URL', async (t) => {
    const { n, m } = await setup(t, { authLimit: { maxFailures: 1000, windowMs: 60_000 } });
    const unregistersBefore = masterCount(m.master, 'unregister');
    for (const [method, route] of ADMIN_ROUTES) {
      const body = method === 'POST' ? { rawBody: '{"syncInterval": 20}' } : {};
      const none = await api(n.url, method, route, { token: null, ...body });
      assert.equal(none.status, 401, `${method} ${route} without a token`);
      assert.match(none.headers.get('content-type') ?? '', /application\/json/);
      assert.match(none.json.error, /token/);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);

      const wrong = await api(n.url, method, route, { token: `${ADMIN_TOKEN}x`, ...body });
      assert.equal(wrong.status, 401, `${method} ${route} with a wrong token`);

      const inQuery = await api(n.url, method, `${route}?token=${ADMIN_TOKEN}&access_token=${ADMIN_TOKEN}`, { token: null, ...body });
      assert.equal(inQuery.status, 401, `${method} ${route} with the token in the query`);
      assert.match(inQuery.json.error, /Authorization header/);

      const basic = await api(n.url, method, route, { token: null, headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` }, ...body });
      assert.equal(basic.status, 401, `${method} ${route} with Basic auth`);
    }
    // None of the rejected calls had an effect.
    assert.equal(n.node.serving, true);
    assert.equal(n.node.config.current.syncInterval, 10);
    assert.equal(masterCount(m.master, 'unregister'), unregistersBefore);
    // Rejections are logged, the token never.
    const rejected = n.logger.lines.filter((line) => line.includes('admin API: rejected'));
    assert.ok(rejected.length >= ADMIN_ROUTES.length * 4);
    assert.ok(rejected.some((line) => line.includes('wrong token')));
    assert.ok(rejected.some((line) => line.includes('token in the URL')));
    assert.equal(n.logger.lines.filter((line) => line.includes(ADMIN_TOKEN)).length, 0, 'the token appears in no log line');
    const logs = await api(n.url, 'GET', '/api/logs?lines=1000');
    assert.equal(logs.status, 200);
    assert.ok(!logs.text.includes(ADMIN_TOKEN));

    // With the token: the routes answer (404 JSON for the unknown one).
    const ok = await api(n.url, 'GET', '/api/status');
    assert.equal(ok.status, 200);
    // Set before the handler (app.ts), so every JSON answer carries them, a served one included.
    assert.equal(ok.headers.get('cache-control'), 'no-store');
    assert.equal(ok.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(ok.headers.get('x-frame-options'), 'DENY');
    assert.match(ok.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.match(ok.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(ok.json.node_id, n.node.config.current.nodeId);
    const lowerScheme = await api(n.url, 'GET', '/api/status', { token: null, headers: { authorization: `bearer ${ADMIN_TOKEN}` } });
    assert.equal(lowerScheme.status, 200, 'the scheme name is case-insensitive');
    const unknown = await api(n.url, 'GET', '/api/no-such-route');
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.error, /no route/);
  });

  test('wrong tokens are limited per client address: 429 after the limit until the window ends; the right token still passes', async (t) => {
    const { n } = await setup(t, { authLimit: { maxFailures: 3, windowMs: 4_000 } });
    for (let i = 0; i < 3; i++) assert.equal((await api(n.url, 'GET', '/api/status', { token: `guess-${i}-0000000000000000` })).status, 401);
    const limited = await api(n.url, 'GET', '/api/status', { token: 'guess-3-0000000000000000' });
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    // Issue 14: the right token is always accepted, even from an address whose guesses are blocked
    // (a neighbour behind the same NAT must not lock the operator out).
    assert.equal((await api(n.url, 'GET', '/api/status')).status, 200);
    assert.equal(n.logger.lines.filter((line) => line.includes('blocked')).length, 1, 'the block is logged once');
    await waitFor('the window to end', async () => (await api(n.url, 'GET', '/api/status', { token: 'guess-4-0000000000000000' })).status === 401, 20_000, 250);
  });

  test('downloads, /healthz, /readyz and /metrics are public; downloads allow any origin, admin routes none', async (t) => {
    const { n, m } = await setup(t);
    await syncedMeeting(m, n, 'pub1');
    const origin = { origin: 'http://tablet.example' };
    const download = await fetchRaw(packageUrl(n.url, 'pub1'), { headers: origin });
    assert.equal(download.status, 200);
    assert.equal(download.headers['access-control-allow-origin'], '*');
    assert.match(String(download.headers['access-control-expose-headers']), /Content-Range/);
    const alias = await fetchRaw(`${n.url}/api/meetings/pub1/download`, { headers: origin });
    assert.equal(alias.status, 200);
    assert.equal(alias.headers['access-control-allow-origin'], '*');
    const preflight = await fetchRaw(packageUrl(n.url, 'pub1'), { method: 'OPTIONS', headers: { ...origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'range' } });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], '*');
    assert.match(String(preflight.headers['access-control-allow-headers']), /Range/);
    const notFound = await fetchRaw(packageUrl(n.url, 'unknown-meeting'), { headers: origin });
    assert.equal(notFound.status, 404);
    assert.equal(notFound.headers['access-control-allow-origin'], '*');

    const admin = await api(n.url, 'GET', '/api/status', { headers: origin });
    assert.equal(admin.status, 200);
    assert.equal(admin.headers.get('access-control-allow-origin'), null, 'no CORS on admin routes');
    const adminPreflight = await api(n.url, 'OPTIONS', '/api/config', { token: null, headers: { ...origin, 'access-control-request-method': 'POST' } });
    assert.equal(adminPreflight.headers.get('access-control-allow-origin'), null);

    assert.equal((await api(n.url, 'GET', '/healthz', { token: null })).json.status, 'ok');
    const ready = await api(n.url, 'GET', '/readyz', { token: null });
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json, { status: 'ready', storage: 'ok', config: 'ok', service: 'ok' });
    const metrics = await api(n.url, 'GET', '/metrics', { token: null });
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
  });

  test('the panel is served with a strict content security policy', async (t) => {
    const { n } = await setup(t);
    const root = await fetchRaw(`${n.url}/`);
    assert.equal(root.status, 302);
    assert.equal(root.headers.location, '/static/index.html');
    const page = await fetchRaw(`${n.url}/static/index.html`);
    assert.equal(page.status, 200);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.equal(page.headers['x-frame-options'], 'DENY');
    const html = page.body.toString('utf8');
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    assert.doesNotMatch(html, /\sstyle=/, 'no inline style');
    assert.doesNotMatch(html, /https?:\/\//, 'nothing from a CDN');
    const script = await fetchRaw(`${n.url}/static/js/main.js`);
    assert.equal(script.status, 200);
    assert.match(String(script.headers['content-type']), /javascript/);
    for (const lang of ['en', 'zh-CN']) assert.equal((await fetchRaw(`${n.url}/static/i18n/${lang}.js`)).status, 200);
  });
});

describe('admin token', () => {
  test('generated on first start when unset, saved to the config file, shown once, and kept at the next start', async (t) => {
    const defer = cleanups(t);
    const m = await startMaster();
    defer(() => m.close());
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const configPath = path.join(dir, 'node_config.json');
    await writeFile(configPath, JSON.stringify(testConfig(m.port)));
    const shown: string[] = [];
    const logger = memoryLogger();
    const first = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger, announceAdminToken: (token) => shown.push(token) });
    const token = first.adminToken;
    await first.stop();
    assert.equal(shown.length, 1);
    assert.equal(shown[0], token);
    assert.ok(token.length >= 32);
    const saved = JSON.parse(await readFile(configPath, 'utf8'));
    assert.equal(saved.adminToken, token);
    assert.ok(!logger.lines.some((line) => line.includes(token)), 'the generated token is not logged');
    assert.ok(!logger.lines.some((line) => line.startsWith('info config: changed')), `saving a generated token is not a config change: ${logger.lines.join('\n')}`);

    const second = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: memoryLogger(), announceAdminToken: (value) => shown.push(value) });
    defer(() => second.stop());
    assert.equal(shown.length, 1, 'not generated or shown again');
    assert.equal(second.adminToken, token);
    assert.equal((await api(second.localUrl, 'GET', '/api/status', { token })).status, 200);
  });

  test('EDGE_ADMIN_TOKEN (or the option) wins over the config and is not written to it; a short one refuses to start', async (t) => {
    const defer = cleanups(t);
    const m = await startMaster();
    defer(() => m.close());
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const configPath = path.join(dir, 'node_config.json');
    await writeFile(configPath, JSON.stringify(testConfig(m.port, { adminToken: 'config-token-0123456789' })));
    // The environment as start.ts reads it (config/cli-options.ts), without touching this process's.
    const environment = readEnvironment({ EDGE_ADMIN_TOKEN: 'env-token-0123456789abc' });
    const node = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: memoryLogger(), environment });
    defer(() => node.stop());
    assert.equal((await api(node.localUrl, 'GET', '/api/status', { token: 'env-token-0123456789abc' })).status, 200);
    assert.equal((await api(node.localUrl, 'GET', '/api/status', { token: 'config-token-0123456789' })).status, 401);
    assert.equal(JSON.parse(await readFile(configPath, 'utf8')).adminToken, 'config-token-0123456789');
    // One node per storage: the refused start below must be about its token, not the lock.
    await node.stop();

    await assert.rejects(
      EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: memoryLogger(), adminToken: 'short' }),
      (error: unknown) => error instanceof ConfigError && /adminToken/.test(error.message) && /16/.test(error.message),
    );
  });
  test('EDGE_SITE_KEY wins over peers.key and is never saved; a malformed one refuses to start naming it; without any key the log says the tier is off and how to turn it on', async (t) => {
    const defer = cleanups(t);
    const m = await startMaster();
    defer(() => m.close());
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const configPath = path.join(dir, 'node_config.json');
    await writeFile(configPath, JSON.stringify(testConfig(m.port, { adminToken: ADMIN_TOKEN })));
    const bare = memoryLogger();
    const keyless = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: bare });
    assert.equal(keyless.site.enabled, false);
    assert.equal(bare.lines.filter((line) => /site tier off: no site key.*--new-site-key/.test(line)).length, 1, 'one line, with how to turn it on');
    await keyless.stop();
    const key = Buffer.alloc(32, 6).toString('base64');
    const logger = memoryLogger();
    const node = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger, environment: readEnvironment({ EDGE_SITE_KEY: key }) });
    defer(() => node.stop());
    assert.equal(node.site.enabled, true);
    assert.equal(JSON.parse(await readFile(configPath, 'utf8')).peers?.key ?? null, null, 'never written to the file');
    assert.ok(!logger.lines.some((line) => line.includes(key)), 'never logged');
    const saved = await api(node.localUrl, 'POST', '/api/config', { body: { peers: { key: Buffer.alloc(32, 8).toString('base64') } } });
    assert.deepEqual(saved.json.overridden_by_start_options, { 'peers.key': 'EDGE_SITE_KEY' });
    await node.stop();
    await assert.rejects(
      EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: memoryLogger(), environment: readEnvironment({ EDGE_SITE_KEY: 'not-a-key' }) }),
      (error: unknown) => error instanceof ConfigError && /^EDGE_SITE_KEY must be 32 bytes in base64/.test(error.message),
    );
  });
});

describe('GET/POST /api/config', () => {
  test('GET redacts the token; posting that document back changes nothing and keeps the token', async (t) => {
    const { n } = await setup(t);
    const got = await api(n.url, 'GET', '/api/config');
    assert.equal(got.status, 200);
    assert.equal(got.json.adminToken, '<redacted>');
    assert.ok(!got.text.includes(ADMIN_TOKEN));
    assert.equal(got.json.mainServerIp, '127.0.0.1');
    assert.equal(got.json.heartbeat.interval, 10);
    const back = await api(n.url, 'POST', '/api/config', { body: got.json });
    assert.equal(back.status, 200);
    assert.deepEqual(back.json.changed, []);
    assert.equal(back.json.message, 'nothing changed');
    assert.equal(back.json.config.adminToken, '<redacted>');
    assert.equal(n.node.adminToken, ADMIN_TOKEN);
    const schema = await api(n.url, 'GET', '/api/config/schema');
    assert.equal(schema.json.properties.heartbeat.properties.interval.minimum, 10);
    assert.equal(schema.json.properties.heartbeat.properties.interval.maximum, 300);
  });

  test('the site key is write-only: GET says only that one is set; posted back it is kept; a bad one is a 400 naming peers.key; never in status or diagnostics', async (t) => {
    const key = Buffer.alloc(32, 3).toString('base64');
    const previous = Buffer.alloc(32, 4).toString('base64');
    const { n } = await setup(t, { config: { peers: { key, previousKeys: [previous] } } });
    const got = await api(n.url, 'GET', '/api/config');
    assert.equal(got.json.peers.key, '<redacted>');
    assert.deepEqual(got.json.peers.previousKeys, ['<redacted>']);
    assert.ok(!got.text.includes(key) && !got.text.includes(previous));
    const back = await api(n.url, 'POST', '/api/config', { body: got.json });
    assert.equal(back.status, 200);
    assert.deepEqual(back.json.changed, []);
    assert.equal(n.node.config.current.peers.key, key);
    const bad = await api(n.url, 'POST', '/api/config', { body: { peers: { key: 'not-a-key' } } });
    assert.equal(bad.status, 400);
    assert.match(bad.json.fields['peers.key'], /^must be 32 bytes in base64/);
    assert.equal(n.node.config.current.peers.key, key, 'nothing applied');
    const rotated = Buffer.alloc(32, 5).toString('base64');
    const set = await api(n.url, 'POST', '/api/config', { body: { peers: { key: rotated, previousKeys: [key] } } });
    assert.equal(set.status, 200);
    assert.ok(!set.text.includes(rotated), 'the answer does not echo the key');
    assert.equal(n.node.config.current.peers.key, rotated);
    const status = await api(n.url, 'GET', '/api/status');
    assert.equal(status.json.site.key_set, true);
    assert.equal(status.json.site.enabled, true);
    for (const secret of [key, rotated]) assert.ok(!status.text.includes(secret), 'no key in the status');
    const zip = unzipEntries(Buffer.from(await (await fetch(`${n.url}/api/diagnostics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).arrayBuffer()));
    for (const [name, content] of zip) for (const secret of [key, rotated]) assert.ok(!content.toString('utf8').includes(secret), `${name} has no site key`);
  });

  test('invalid values: 400 naming each field, and nothing changes (memory or file)', async (t) => {
    const { n } = await setup(t);
    const fileBefore = await readFile(n.configPath, 'utf8');
    const cases: Array<[unknown, Record<string, string>]> = [
      [{ network: { retryCount: 11 } }, { 'network.retryCount': 'must be ≤ 10' }],
      [{ syncInterval: 5, heartbeat: { interval: 301 } }, { syncInterval: 'must be ≥ 10', 'heartbeat.interval': 'must be ≤ 300' }],
      [{ mainServerPort: 'eighty' }, { mainServerPort: 'must be integer' }],
      [{ network: { bogus: 1 } }, { 'network.bogus': 'is not a known setting' }],
      [{ logging: { level: 'LOUD' } }, { 'logging.level': 'must be one of DEBUG, INFO, WARNING, WARN, ERROR, CRITICAL, debug, info, warning, warn, error, critical' }],
      [{ adminToken: 'too-short' }, { adminToken: 'must NOT have fewer than 16 characters' }],
      // A valid change in the same body is not applied either.
      [{ syncInterval: 20, network: { retryCount: 0 } }, { 'network.retryCount': 'must be ≥ 1' }],
    ];
    for (const [body, fields] of cases) {
      const res = await api(n.url, 'POST', '/api/config', { body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.deepEqual(res.json.fields, fields, JSON.stringify(body));
      for (const key of Object.keys(fields)) assert.ok(res.json.error.includes(key), `error names ${key}`);
    }
    const cleared = await api(n.url, 'POST', '/api/config', { body: { adminToken: null } });
    assert.equal(cleared.status, 400);
    assert.ok(cleared.json.fields.adminToken);
    for (const rawBody of ['[1, 2]', '"text"', '42', 'null']) {
      const res = await api(n.url, 'POST', '/api/config', { rawBody });
      assert.equal(res.status, 400, rawBody);
      assert.deepEqual(res.json.fields, { '': 'must be a JSON object' });
    }
    for (const rawBody of ['{"syncInterval": ', '{bad json}', '']) {
      const res = await api(n.url, 'POST', '/api/config', { rawBody, headers: { 'content-type': 'application/json' } });
      assert.equal(res.status, 400, rawBody);
      assert.match(res.json.error, /JSON|empty/);
    }
    assert.equal(n.node.config.current.syncInterval, 10);
    assert.equal(n.node.config.current.network.retryCount, 3);
    assert.equal(await readFile(n.configPath, 'utf8'), fileBefore, 'the file is untouched');
  });

  test('bodies over 64 KiB: 413, with or without a Content-Length', async (t) => {
    const { n } = await setup(t);
    const big = JSON.stringify({ mainServerIp: 'a'.repeat(70 * 1024) });
    const res = await api(n.url, 'POST', '/api/config', { rawBody: big, headers: { 'content-type': 'application/json' } });
    assert.equal(res.status, 413);
    assert.match(res.json.error, /larger than 65536 bytes/);
    const chunked = await postChunked(`${n.url}/api/config`, [Buffer.from(big.slice(0, 40_000)), Buffer.from(big.slice(40_000))], {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      'content-type': 'application/json',
    });
    assert.equal(chunked.status, 413);
    const heartbeat = await api(n.url, 'POST', '/api/config/heartbeat', { rawBody: ' '.repeat(70 * 1024) + '30' });
    assert.equal(heartbeat.status, 413);
    // Just under the limit is read and validated normally.
    const under = await api(n.url, 'POST', '/api/config', { rawBody: JSON.stringify({ mainServerIp: 'b'.repeat(60 * 1024) }) });
    assert.equal(under.status, 400);
    assert.ok(under.json.fields.mainServerIp);
  });

  test('a valid partial change is saved atomically to the file and reported', async (t) => {
    const { n } = await setup(t);
    const res = await api(n.url, 'POST', '/api/config', { body: { network: { retryCount: 5 }, cleanup: { cleanOnStartup: false }, logging: { level: 'DEBUG' } } });
    assert.equal(res.status, 200);
    assert.deepEqual([...res.json.changed].sort(), ['cleanup.cleanOnStartup', 'logging.level', 'network.retryCount']);
    assert.deepEqual(res.json.restart_required, []);
    assert.equal(res.json.config.network.retryCount, 5);
    const saved = JSON.parse(await readFile(n.configPath, 'utf8'));
    assert.equal(saved.network.retryCount, 5);
    assert.equal(saved.network.connectionTimeout, 2, 'the rest of the section is kept');
    assert.equal(saved.cleanup.cleanOnStartup, false);
    assert.equal(saved.adminToken, ADMIN_TOKEN, 'the file keeps the real token');
    assert.equal(n.node.logger.level, 'debug', 'log level applied live');
  });

  test('the full document the reference panel posts is accepted and applied', async (t) => {
    const { n, m } = await setup(t);
    const body = {
      mainServerIp: '127.0.0.1',
      mainServerPort: m.port,
      nodePort: 8001,
      syncInterval: 30,
      usePublicAddress: true,
      publicIp: '127.0.0.1',
      publicPort: null,
      heartbeat: { interval: 20, timeout: 60 },
      cleanup: { enabled: true, cleanOnStartup: false, cleanEndedMeetings: true },
    };
    const res = await api(n.url, 'POST', '/api/config', { body });
    assert.equal(res.status, 200);
    assert.equal(res.json.status, 'success');
    assert.equal(typeof res.json.message, 'string');
    const current = n.node.config.current;
    assert.equal(current.syncInterval, 30);
    assert.deepEqual(current.heartbeat, { interval: 20, timeout: 60 });
    assert.equal(current.cleanup.cleanOnStartup, false);
    assert.equal(current.network.retryDelay, 0.05, 'sections it does not send are kept');
    assert.equal(n.node.adminToken, ADMIN_TOKEN);
  });

  test('a listen-port change is saved and reported as needing a restart; the node keeps its port', async (t) => {
    const { n } = await setup(t);
    const port = n.node.port;
    const res = await api(n.url, 'POST', '/api/config', { body: { nodePort: 18_123 } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.restart_required, ['nodePort']);
    assert.match(res.json.message, /nodePort takes effect after a restart/);
    assert.equal(JSON.parse(await readFile(n.configPath, 'utf8')).nodePort, 18_123);
    const status = await api(n.url, 'GET', '/api/status');
    assert.deepEqual(status.json.restart_required, ['nodePort']);
    assert.equal(status.json.node_port, port);
  });

  test('a listen-port change on a node started with --port is saved and reported as overridden by it, not as needing a restart', async (t) => {
    const { n } = await setup(t, { portSource: '--port' });
    const res = await api(n.url, 'POST', '/api/config', { body: { nodePort: 18_125 } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.restart_required, []);
    assert.deepEqual(res.json.overridden_by_start_options, { nodePort: '--port' });
    assert.match(res.json.message, /nodePort is set by --port at start/);
    assert.equal(JSON.parse(await readFile(n.configPath, 'utf8')).nodePort, 18_125, 'saved: used when the node starts without --port');
    const status = await api(n.url, 'GET', '/api/status');
    assert.deepEqual(status.json.restart_required, []);
    assert.deepEqual(status.json.start_overrides, { nodePort: '--port' });
  });

  test('setting nodePort to the value the node runs with asks for no restart', async (t) => {
    const { n } = await setup(t);
    const running = n.node.config.current.nodePort;
    const same = await api(n.url, 'POST', '/api/config', { body: { nodePort: running } });
    assert.equal(same.status, 200);
    assert.deepEqual(same.json.restart_required, []);
    assert.equal(same.json.message, 'nothing changed');
    // Changed, then set back to the running value: saved, but nothing waits for a restart.
    assert.deepEqual((await api(n.url, 'POST', '/api/config', { body: { nodePort: 18_124 } })).json.restart_required, ['nodePort']);
    const back = await api(n.url, 'POST', '/api/config', { body: { nodePort: running } });
    assert.equal(back.status, 200);
    assert.deepEqual(back.json.changed, ['nodePort']);
    assert.deepEqual(back.json.restart_required, []);
    assert.doesNotMatch(back.json.message, /restart/);
    assert.deepEqual((await api(n.url, 'GET', '/api/status')).json.restart_required, []);
  });

  test('an unknown top-level key (a typo) is refused with 400 naming it, and nothing is saved', async (t) => {
    const { n } = await setup(t);
    const fileBefore = await readFile(n.configPath, 'utf8');
    const res = await api(n.url, 'POST', '/api/config', { body: { synInterval: 30 } });
    assert.equal(res.status, 400);
    assert.deepEqual(res.json.fields, { synInterval: 'is not a known setting' });
    assert.match(res.json.error, /synInterval/);
    assert.equal(await readFile(n.configPath, 'utf8'), fileBefore);
  });

  test('mainServerIp with a port, scheme or path is refused with 400; a host name or address is accepted', async (t) => {
    const { n } = await setup(t);
    for (const value of ['127.0.0.1:80', 'http://127.0.0.1', '127.0.0.1/x', 'local host']) {
      const res = await api(n.url, 'POST', '/api/config', { body: { mainServerIp: value } });
      assert.equal(res.status, 400, value);
      assert.match(res.json.fields.mainServerIp, /host name, IPv4 or IPv6/, value);
    }
    assert.equal(n.node.config.current.mainServerIp, '127.0.0.1');
    const publicIp = await api(n.url, 'POST', '/api/config', { body: { publicIp: '::1' } });
    assert.equal(publicIp.status, 200);
  });

  test('legacy POST /api/config/heartbeat: a bare integer or {"interval": n}, 10–300', async (t) => {
    const { n } = await setup(t);
    const bare = await api(n.url, 'POST', '/api/config/heartbeat', { rawBody: '30' });
    assert.equal(bare.status, 200);
    assert.equal(bare.json.status, 'success');
    assert.equal(n.node.config.current.heartbeat.interval, 30);
    const object = await api(n.url, 'POST', '/api/config/heartbeat', { body: { interval: 45 } });
    assert.equal(object.status, 200);
    assert.equal(n.node.config.current.heartbeat.interval, 45);
    assert.equal(JSON.parse(await readFile(n.configPath, 'utf8')).heartbeat.interval, 45);
    for (const [rawBody, message] of [
      ['5', 'must be ≥ 10'],
      ['301', 'must be ≤ 300'],
      ['{"interval": 301}', 'must be ≤ 300'],
      ['{"interval": 12.5}', 'must be an integer from 10 to 300 (seconds)'],
      ['{"interval": "30"}', 'must be an integer from 10 to 300 (seconds)'],
      ['{"seconds": 30}', 'must be an integer from 10 to 300 (seconds)'],
      ['abc', 'must be an integer from 10 to 300 (seconds)'],
      ['', 'must be an integer from 10 to 300 (seconds)'],
    ] as const) {
      const res = await api(n.url, 'POST', '/api/config/heartbeat', { rawBody });
      assert.equal(res.status, 400, rawBody);
      assert.deepEqual(res.json.fields, { interval: message }, rawBody);
    }
    assert.equal(n.node.config.current.heartbeat.interval, 45);
  });
});

describe('live apply', () => {
  test('changed poll and heartbeat intervals are rescheduled from now: the master sees the next beat and poll at the new rate', async (t) => {
    // Long intervals first: without a reschedule the next beat would come in 300 s, the next poll in an hour.
    const { n, m } = await setup(t, { config: { syncInterval: 3600, heartbeat: { interval: 300 } } });
    await waitFor('first poll', () => n.node.sync.lastSuccess);
    const before = await api(n.url, 'GET', '/api/status');
    const heartbeatAt = Date.parse(before.json.schedule.heartbeat.next_at);
    const pollAt = Date.parse(before.json.schedule.poll.next_at);
    assert.ok(heartbeatAt - Date.now() > 250_000, 'next heartbeat about 300 s away');
    assert.ok(pollAt - Date.now() > 3_500_000, 'next poll about an hour away');
    const beats = masterCount(m.master, 'heartbeat');
    const polls = masterCount(m.master, 'status');

    const sent = Date.now();
    const res = await api(n.url, 'POST', '/api/config', { body: { syncInterval: 10, heartbeat: { interval: 10 } } });
    const answered = Date.now();
    assert.equal(res.status, 200);
    assert.deepEqual([...res.json.changed].sort(), ['heartbeat.interval', 'syncInterval']);
    const after = await api(n.url, 'GET', '/api/status');
    assert.equal(after.json.schedule.heartbeat.interval_seconds, 10);
    const nextBeat = Date.parse(after.json.schedule.heartbeat.next_at);
    const nextPoll = Date.parse(after.json.schedule.poll.next_at);
    assert.ok(nextBeat >= sent + 10_000 - 1 && nextBeat <= answered + 10_000, `next heartbeat counted from the change (${nextBeat - sent} ms)`);
    assert.ok(nextPoll >= sent + 10_000 - 1 && nextPoll <= answered + 10_000, `next poll counted from the change (${nextPoll - sent} ms)`);
    // Observed on the master: one more beat and one more poll, which at the old rate would be minutes away.
    await waitFor('a heartbeat at the new interval', () => masterCount(m.master, 'heartbeat') > beats, 20_000, 100);
    await waitFor('a poll at the new interval', () => masterCount(m.master, 'status') > polls, 20_000, 100);

    // And back: the next beat moves 300 s out again, from now.
    const again = Date.now();
    assert.equal((await api(n.url, 'POST', '/api/config/heartbeat', { rawBody: '300' })).status, 200);
    const later = await api(n.url, 'GET', '/api/status');
    assert.ok(Date.parse(later.json.schedule.heartbeat.next_at) >= again + 300_000 - 1);
  });

  test('a master change unregisters from the old master and registers with the new one', async (t) => {
    const { n, m, defer } = await setup(t);
    const second = await startMaster();
    defer(() => second.close());
    assert.ok(m.master.nodes().some((node) => node.nodeId === n.node.config.current.nodeId));
    const res = await api(n.url, 'POST', '/api/config', { body: { mainServerPort: second.port } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json.changed, ['mainServerPort']);
    // Applied before the answer: the old master saw the unregister, the new one the register.
    assert.equal(masterCount(m.master, 'unregister'), 1);
    assert.ok(!m.master.nodes().some((node) => node.nodeId === n.node.config.current.nodeId), 'gone from the old master');
    assert.equal(masterCount(second.master, 'register'), 1);
    assert.ok(second.master.nodes().some((node) => node.nodeId === n.node.config.current.nodeId && node.address === n.node.address));
    await waitFor('a heartbeat and a poll to the new master', () => masterCount(second.master, 'heartbeat') > 0 && masterCount(second.master, 'status') > 0);
    const status = await api(n.url, 'GET', '/api/status');
    assert.equal(status.json.main_server, second.url);
    assert.equal(status.json.master.registered, true);
    // Nothing goes to the old master any more.
    const oldRequests = m.master.stats().requestsTotal;
    await n.node.heartbeatNow();
    await n.node.syncNow();
    assert.equal(m.master.stats().requestsTotal, oldRequests);
  });
});

describe('live apply of identity', () => {
  test('a new public address or node id is registered at once; the old id is unregistered', async (t) => {
    const { n, m } = await setup(t);
    const oldId = n.node.config.current.nodeId ?? '';
    const moved = await api(n.url, 'POST', '/api/config', { body: { publicPort: 18_555 } });
    assert.equal(moved.status, 200);
    assert.equal(n.node.address, '127.0.0.1:18555');
    assert.equal(m.master.nodes().find((node) => node.nodeId === oldId)?.address, '127.0.0.1:18555', 'the master hands tablets the new address');
    assert.equal(masterCount(m.master, 'unregister'), 0, 'same id, same master: registering again is enough');

    const renamed = await api(n.url, 'POST', '/api/config', { body: { nodeId: 'edge-renamed-1' } });
    assert.equal(renamed.status, 200);
    assert.equal(masterCount(m.master, 'unregister'), 1);
    const ids = m.master.nodes().map((node) => node.nodeId);
    assert.ok(ids.includes('edge-renamed-1'));
    assert.ok(!ids.includes(oldId), 'the old id is gone from the master');
    assert.equal((await api(n.url, 'GET', '/api/status')).json.node_id, 'edge-renamed-1');
  });
});

describe('service stop/start', () => {
  test('stop unregisters, pauses polls and heartbeats, downloads answer 503; start registers and resumes at once', async (t) => {
    const { n, m } = await setup(t);
    await syncedMeeting(m, n, 'svc1');
    assert.equal((await fetchRaw(packageUrl(n.url, 'svc1'))).status, 200);

    const stopped = await api(n.url, 'POST', '/api/service/stop');
    assert.equal(stopped.status, 200);
    assert.equal(stopped.json.running, false);
    assert.equal(masterCount(m.master, 'unregister'), 1);
    assert.ok(!m.master.nodes().some((node) => node.nodeId === n.node.config.current.nodeId));
    const refused = await fetchRaw(packageUrl(n.url, 'svc1'));
    assert.equal(refused.status, 503);
    assert.ok(refused.headers['retry-after']);
    const status = await api(n.url, 'GET', '/api/status');
    assert.equal(status.json.running, false);
    assert.equal(status.json.sync_status, 'stopped');
    assert.equal(status.json.schedule.heartbeat.next_at, null);
    assert.equal(status.json.schedule.poll.next_at, null);
    assert.equal((await api(n.url, 'GET', '/readyz', { token: null })).status, 503);
    assert.equal((await api(n.url, 'POST', '/api/sync')).status, 409);
    const again = await api(n.url, 'POST', '/api/service/stop');
    assert.equal(again.json.message, 'service already stopped');
    assert.equal(masterCount(m.master, 'unregister'), 1);
    // Nothing reaches the master while stopped, even when asked.
    const requests = m.master.stats().requestsTotal;
    await n.node.syncNow();
    assert.equal(m.master.stats().requestsTotal, requests);

    const registers = masterCount(m.master, 'register');
    const beats = masterCount(m.master, 'heartbeat');
    const started = await api(n.url, 'POST', '/api/service/start');
    assert.equal(started.status, 200);
    assert.equal(started.json.running, true);
    assert.equal(masterCount(m.master, 'register'), registers + 1, 'registered before the answer');
    assert.ok(m.master.nodes().some((node) => node.nodeId === n.node.config.current.nodeId));
    await waitFor('a heartbeat right after start', () => masterCount(m.master, 'heartbeat') > beats);
    assert.equal((await fetchRaw(packageUrl(n.url, 'svc1'))).status, 200);
    assert.equal((await api(n.url, 'GET', '/readyz', { token: null })).status, 200);
  });
});

describe('status, sync, events, logs, diagnostics, metrics', () => {
  test('GET /api/status has the reference fields (same names and types) and the per-meeting detail', async (t) => {
    const { n, m } = await setup(t);
    await syncedMeeting(m, n, 'st1', 100_000);
    const size = packageSize(m, 'st1');
    const res = await fetchRaw(packageUrl(n.url, 'st1'));
    assert.equal(res.status, 200);
    // The server counts the download once its side of the response has finished.
    await waitFor('the download counted', () => n.node.stats.peek('st1')?.downloadsCompleted === 1);
    const { json: s } = await api(n.url, 'GET', '/api/status');
    assert.equal(s.node_id, n.node.config.current.nodeId);
    assert.equal(s.running, true);
    assert.equal(s.connected, true);
    assert.equal(s.main_server, m.url);
    assert.equal(s.node_ip, '127.0.0.1');
    assert.equal(s.node_port, n.node.port);
    assert.equal(typeof s.start_time, 'number', 'Unix seconds, as the reference');
    assert.ok(Math.abs(s.start_time * 1000 - n.node.startedAt) < 1);
    assert.equal(typeof s.last_sync, 'number');
    assert.equal(typeof s.sync_status, 'string');
    assert.equal(s.meeting_count, 1);
    assert.equal(s.storage_usage, size);
    assert.deepEqual(Object.keys(s.active_meetings[0]).sort(), ['file_count', 'id', 'size', 'status', 'sync_time', 'title']);
    assert.equal(s.active_meetings[0].status, 'active');
    const meeting = s.meetings.find((entry: { id: string }) => entry.id === 'st1');
    assert.equal(meeting.state, 'synced');
    assert.equal(meeting.size, size);
    assert.equal(meeting.sha256, m.master.meeting('st1')?.package?.sha256);
    assert.ok(Date.parse(meeting.synced_at) > 0);
    assert.equal(meeting.progress, null);
    assert.equal(meeting.last_error, null);
    assert.equal(meeting.downloads_completed, 1);
    assert.equal(meeting.bytes_served, size);
    assert.equal(s.storage.used, size);
    assert.equal(s.storage.max, 10737418240);
    assert.ok(s.storage.disk_free > 0 && s.storage.disk_total >= s.storage.disk_free);
    assert.equal(s.master.reachable, true);
    assert.equal(s.master.registered, true);
    assert.equal(s.master.last_error, null);

    await m.master.close();
    await n.node.syncNow();
    const { json: down } = await api(n.url, 'GET', '/api/status');
    assert.equal(down.connected, false);
    assert.equal(down.master.reachable, false);
    assert.match(down.master.last_error.message, /.+/);
    assert.equal(down.sync_status, 'error');
  });

  test('POST /api/sync polls and reconciles before answering', async (t) => {
    const { n, m } = await setup(t);
    await waitFor('first poll', () => n.node.sync.lastSuccess);
    m.master.addMeeting({ id: 'sy1', title: 'Sync now', packageSizeBytes: 32 * 1024 });
    await m.master.startMeeting('sy1');
    const res = await api(n.url, 'POST', '/api/sync');
    assert.equal(res.status, 200);
    assert.equal(res.json.status, 'success');
    const { json: s } = await api(n.url, 'GET', '/api/status');
    assert.ok(s.meetings.some((entry: { id: string; state: string }) => entry.id === 'sy1' && entry.state !== 'ended'));
    await m.master.close();
    const failed = await api(n.url, 'POST', '/api/sync');
    assert.equal(failed.status, 502);
    assert.match(failed.json.error, /poll of the master failed/);
  });

  test('HEAD /api/events answers the stream\'s headers and no body (no stream attached, no error)', async (t) => {
    const { n } = await setup(t);
    const res = await api(n.url, 'HEAD', '/api/events');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    assert.equal(res.text, '');
    assert.ok(!n.logger.lines.some((line) => /ERR_HTTP_HEADERS_SENT|http HEAD \/api\/events/.test(line)));
    assert.equal((await api(n.url, 'HEAD', '/api/events', { token: null })).status, 401, 'still needs the token');
  });

  test('GET /api/events streams state changes and coalesced sync progress', async (t) => {
    // Throttled so the sync lasts a couple of seconds and progress is reported along the way.
    const { n, m } = await setup(t, {}, { throttleBytesPerSec: 400_000, chunkSize: 4096 });
    const events = openEvents(n.url);
    t.after(() => events.stop());
    await events.ready;
    m.master.addMeeting({ id: 'ev1', title: 'Events', packageSizeBytes: 1_000_000 });
    await m.master.startMeeting('ev1');
    const began = Date.now();
    await api(n.url, 'POST', '/api/sync');
    await waitFor('sync succeeded event', () => events.messages.some((e) => e.event === 'sync' && e.data.phase === 'succeeded' && e.data.id === 'ev1'), 20_000);
    const elapsed = Date.now() - began;
    const kinds = events.messages.map((e) => e.event);
    assert.ok(kinds.includes('poll'));
    const startedEvent = events.messages.find((e) => e.event === 'sync' && e.data.phase === 'started');
    assert.equal(startedEvent?.data.id, 'ev1');
    const progress = events.messages.filter((e) => e.event === 'progress');
    assert.ok(progress.length >= 2, `progress reported during the sync (${progress.length})`);
    const bytes = progress.map((e) => e.data.meetings.find((p: { id: string }) => p.id === 'ev1')?.bytes ?? 0);
    assert.ok(bytes.every((value, i) => i === 0 || value >= bytes[i - 1]!), 'bytes only grow');
    assert.equal(progress[0]!.data.meetings[0].total, null, 'size unknown while fetching');
    // Coalesced: at most one flush per 250 ms, however many chunks arrived (about 250 here).
    assert.ok(progress.length <= elapsed / 250 + 2, `${progress.length} progress events in ${elapsed} ms`);
    const done = events.messages.find((e) => e.event === 'sync' && e.data.phase === 'succeeded');
    assert.equal(done?.data.size, packageSize(m, 'ev1'));
    await waitFor('log lines on the stream', () => events.messages.some((e) => e.event === 'log' && e.data.lines.some((line: string) => line.includes('sync ev1'))));

    await api(n.url, 'POST', '/api/service/stop');
    await waitFor('service event', () => events.messages.some((e) => e.event === 'service' && e.data.running === false));
    await api(n.url, 'POST', '/api/service/start');
    await waitFor('service event', () => events.messages.some((e) => e.event === 'service' && e.data.running === true));
    await api(n.url, 'POST', '/api/config', { body: { syncInterval: 30 } });
    await waitFor('config event', () => events.messages.some((e) => e.event === 'config' && e.data.changed.includes('syncInterval')));
  });

  test('GET /api/logs?lines=N returns the last N lines; N is validated', async (t) => {
    const { n } = await setup(t);
    const all = await api(n.url, 'GET', '/api/logs');
    assert.equal(all.status, 200);
    assert.ok(all.json.lines.length > 3);
    assert.ok(all.json.lines.some((line: string) => /INFO {2}registered with master/.test(line)));
    const two = await api(n.url, 'GET', '/api/logs?lines=2');
    assert.deepEqual(two.json.lines, (await api(n.url, 'GET', '/api/logs?lines=1000')).json.lines.slice(-2));
    for (const value of ['0', '1001', '-1', '1.5', 'abc', '', '1e3']) {
      const res = await api(n.url, 'GET', `/api/logs?lines=${value}`);
      assert.equal(res.status, 400, value);
      assert.deepEqual(Object.keys(res.json.fields), ['lines']);
      assert.match(res.json.error, /^lines /);
    }
  });

  test('GET /api/diagnostics is a zip with logs, redacted config, status and versions, without the token', async (t) => {
    const { n, m } = await setup(t);
    await syncedMeeting(m, n, 'dg1');
    await api(n.url, 'GET', `/api/status?token=${ADMIN_TOKEN}`, { token: null });
    const res = await fetch(`${n.url}/api/diagnostics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/zip');
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="meeting-edge-diagnostics-node-[0-9a-f]+-.+\.zip"$/);
    const zip = Buffer.from(await res.arrayBuffer());
    const entries = unzipEntries(zip);
    assert.deepEqual([...entries.keys()].sort(), ['README.txt', 'config.json', 'logs.txt', 'metrics.txt', 'status.json', 'versions.json']);
    const config = JSON.parse(entries.get('config.json')!.toString('utf8'));
    assert.equal(config.adminToken, '<redacted>');
    assert.equal(config.mainServerPort, m.port);
    const status = JSON.parse(entries.get('status.json')!.toString('utf8'));
    assert.equal(status.node_id, n.node.config.current.nodeId);
    assert.ok(status.meetings.some((entry: { id: string }) => entry.id === 'dg1'));
    assert.match(entries.get('logs.txt')!.toString('utf8'), /sync dg1/);
    const versions = JSON.parse(entries.get('versions.json')!.toString('utf8'));
    assert.equal(versions['meeting-edge'], '0.1.0');
    assert.equal(versions.node, process.versions.node);
    assert.match(entries.get('metrics.txt')!.toString('utf8'), /meeting_edge_packages 1/);
    for (const [name, content] of entries) assert.ok(!content.toString('utf8').includes(ADMIN_TOKEN), `${name} has no token`);
  });

  test('/metrics: sync results, bytes fetched and served, packages, poll and heartbeat failures; private when configured', async (t) => {
    const { n, m } = await setup(t);
    await syncedMeeting(m, n, 'mx1', 50_000);
    const size = packageSize(m, 'mx1');
    assert.equal((await fetchRaw(packageUrl(n.url, 'mx1'))).status, 200);
    await waitFor('the download counted', () => n.node.stats.peek('mx1')?.downloadsCompleted === 1);
    const scrape = async () => (await api(n.url, 'GET', '/metrics', { token: null })).text;
    const value = (text: string, series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    let text = await scrape();
    assert.equal(value(text, 'meeting_edge_syncs_total{result="success"}'), 1);
    assert.equal(value(text, 'meeting_edge_sync_bytes_fetched_total'), size);
    assert.equal(value(text, 'meeting_edge_bytes_served_total'), size);
    assert.equal(value(text, 'meeting_edge_packages'), 1);
    assert.equal(value(text, 'meeting_edge_package_bytes'), size);
    assert.equal(value(text, 'meeting_edge_active_downloads'), 0);
    assert.equal(value(text, 'meeting_edge_sync_duration_seconds_count{result="success"}'), 1);
    assert.equal(value(text, 'meeting_edge_service_running'), 1);
    assert.ok((value(text, 'meeting_edge_master_requests_total{call="heartbeat",result="ok"}') ?? 0) >= 1);
    // The process gauges operators alert on: figures of this process, within sane bounds.
    const heapUsed = value(text, 'nodejs_heap_size_used_bytes') ?? 0;
    assert.ok(heapUsed > 1024 * 1024 && heapUsed < (value(text, 'process_resident_memory_bytes') ?? 0), `heap used ${heapUsed}`);
    assert.ok((value(text, 'nodejs_external_memory_bytes') ?? 0) > 0);
    const fds = value(text, 'process_open_fds') ?? 0;
    assert.ok(fds >= 3 && fds < 10_000, `open fds ${fds}`);
    const lag = value(text, 'nodejs_eventloop_lag_seconds');
    assert.ok(lag !== undefined && lag >= 0 && lag < 60, `event-loop lag ${lag}`);

    m.master.setFault('heartbeat', { kind: 'status', code: 500 });
    m.master.setFault('status', { kind: 'status', code: 500 });
    await n.node.heartbeatNow();
    await n.node.syncNow();
    text = await scrape();
    // At least the two asked for (a scheduled beat or poll may add one on a slow machine).
    assert.ok((value(text, 'meeting_edge_master_heartbeat_failures_total') ?? 0) >= 1);
    assert.ok((value(text, 'meeting_edge_master_poll_failures_total') ?? 0) >= 1);
    assert.equal(value(text, 'meeting_edge_master_poll_failures_total'), value(text, 'meeting_edge_master_polls_total{result="failure"}'));
    assert.equal(value(text, 'meeting_edge_master_reachable'), 0);

    assert.equal((await api(n.url, 'POST', '/api/config', { body: { metricsPublic: false } })).status, 200);
    assert.equal((await api(n.url, 'GET', '/metrics', { token: null })).status, 401);
    const privateScrape = await api(n.url, 'GET', '/metrics');
    assert.equal(privateScrape.status, 200);
    assert.match(privateScrape.text, /meeting_edge_packages 1/);
  });

  test('two nodes in one process keep separate metrics', async (t) => {
    const { n, m, defer } = await setup(t);
    const other = await startAdminNode(m.port);
    defer(async () => {
      await other.stop();
      await removeDir(other.dir);
    });
    await syncedMeeting(m, n, 'two1', 10_000);
    await other.node.syncNow();
    await waitFor('second node synced', () => other.node.sync.isServable('two1'));
    const first = (await api(n.url, 'GET', '/metrics', { token: null })).text;
    const second = (await api(other.url, 'GET', '/metrics', { token: null })).text;
    assert.match(first, /^meeting_edge_syncs_total\{result="success"\} 1$/m);
    assert.match(second, /^meeting_edge_syncs_total\{result="success"\} 1$/m);
  });
});
