import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSampleMaster } from './cli.ts';
import { createReferenceMaster, type ReferenceMaster, type ReferenceMasterOptions } from './master.ts';
import { buildMeetingPackage } from './packages.ts';
import { readmeOf } from './read-zip.ts';

interface RawResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The body ended properly (terminating chunk / full Content-Length). */
  complete: boolean;
  /** What ended it otherwise: 'aborted', an error code, or 'gave-up' (idle). */
  failure?: string;
}

/**
 * Minimal node:http client that never throws on a broken body: it reports how the body ended.
 * giveUpAfterIdleMs bounds how long a stalled/hanging answer is waited for.
 */
function rawRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; giveUpAfterIdleMs?: number; onResponse?: () => void } = {},
): Promise<RawResult & { noResponse?: string }> {
  return new Promise((resolve) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false });
    const idle = options.giveUpAfterIdleMs ?? 5_000;
    let gaveUp = false;
    req.setTimeout(idle, () => {
      gaveUp = true;
      req.destroy(new Error('gave-up'));
    });
    let responded = false;
    req.on('error', (error: NodeJS.ErrnoException) => {
      // After a response started, the response's own events report the failure.
      if (responded) return;
      resolve({ status: 0, headers: {}, body: Buffer.alloc(0), complete: false, noResponse: error.code ?? error.message });
    });
    req.on('response', (res) => {
      responded = true;
      options.onResponse?.();
      const chunks: Buffer[] = [];
      let failure: string | undefined;
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('aborted', () => {
        failure ??= 'aborted';
      });
      res.on('error', (error: NodeJS.ErrnoException) => {
        failure ??= error.code ?? error.message;
      });
      res.on('close', () => {
        const result: RawResult = { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete };
        if (!res.complete) result.failure = gaveUp ? 'gave-up' : (failure ?? 'closed');
        resolve(result);
      });
    });
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

function postJson(url: string, value: unknown): Promise<RawResult> {
  return rawRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });
}

function parse(result: RawResult): unknown {
  return JSON.parse(result.body.toString('utf8'));
}

/** Raw bytes of a whole HTTP exchange over a plain socket, to see the chunked framing itself. */
function rawWire(port: number, path: string): Promise<{ bytes: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ bytes: Buffer.concat(chunks), error: error.code ?? error.message }));
    socket.on('end', () => resolve({ bytes: Buffer.concat(chunks) }));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
  });
}

function endsWithZipEndRecord(bytes: Buffer): boolean {
  const at = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  return at >= 0 && at >= bytes.length - 22 - 65_535 && at <= bytes.length - 22;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

async function waitFor(predicate: () => boolean | Promise<boolean>, what: string, limitMs = 5_000): Promise<void> {
  const giveUpAt = Date.now() + limitMs;
  while (!(await predicate())) {
    if (Date.now() > giveUpAt) throw new Error(`gave up waiting for ${what}`);
    await sleep(10);
  }
}

const FAST: ReferenceMasterOptions = { tokenCheckIntervalMs: 20, tokenSettleMs: 30, tokenMaxWaitMs: 60_000 };

async function withMaster(
  options: ReferenceMasterOptions,
  run: (master: ReferenceMaster, url: string, port: number) => Promise<void>,
): Promise<void> {
  const tempDir = await mkdtemp(join(tmpdir(), 'reference-master-test-'));
  const master = createReferenceMaster({ tempDir, ...options });
  try {
    const { url, port } = await master.listen();
    await run(master, url, port);
  } finally {
    await master.close();
    // close() deletes its temporary packages.
    assert.deepEqual(await readdir(tempDir), []);
    await rm(tempDir, { recursive: true, force: true });
  }
}

function beat(nodeId: string, address: string, active: { id: string; title: unknown }[], synced: string[], extra: object = {}) {
  return { node_id: nodeId, address, status: 'online', active_meetings: active, synced_meetings: synced, ...extra };
}

describe('package download', () => {
  let master: ReferenceMaster;
  let url: string;
  let port: number;
  let tempDir: string;
  before(async () => {
    tempDir = await mkdtemp(join(tmpdir(), 'reference-master-test-'));
    master = createReferenceMaster({ tempDir, chunkSize: 1000, ...FAST });
    ({ url, port } = await master.listen());
    master.addMeeting({ id: 'm1', title: '第一季度工作会议' });
    master.addMeeting({ id: 'meeting-2024-01', title: 'Later meeting' });
    await master.startMeeting('m1');
  });
  after(async () => {
    await master.close();
    await rm(tempDir, { recursive: true, force: true });
  });

  test('is chunked with no length, validators or ranges, and a zip attachment', async () => {
    const result = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`);
    assert.equal(result.status, 200);
    assert.ok(result.complete);
    assert.equal(result.headers['content-type'], 'application/zip');
    assert.equal(result.headers['content-disposition'], 'attachment; filename="meeting_m1_pdfs.zip"');
    assert.equal(result.headers['transfer-encoding'], 'chunked');
    assert.equal(result.headers['server'], 'uvicorn');
    assert.ok(result.headers['date']);
    for (const absent of ['content-length', 'etag', 'last-modified', 'accept-ranges']) {
      assert.equal(result.headers[absent], undefined, absent);
    }
    assert.ok(endsWithZipEndRecord(result.body));
    assert.equal(sha256(result.body), master.meeting('m1')?.package?.sha256);
  });

  test('writes small chunks and a terminating chunk on the wire', async () => {
    const { bytes, error } = await rawWire(port, '/api/v1/meetings/m1/download-package-direct');
    assert.equal(error, undefined);
    const text = bytes.toString('latin1');
    const bodyStart = text.indexOf('\r\n\r\n') + 4;
    let offset = bodyStart;
    const sizes: number[] = [];
    for (;;) {
      const lineEnd = text.indexOf('\r\n', offset);
      const size = parseInt(text.slice(offset, lineEnd), 16);
      sizes.push(size);
      offset = lineEnd + 2 + size + 2;
      if (size === 0) break;
    }
    assert.equal(offset, bytes.length);
    assert.ok(sizes.length > 2);
    assert.ok(sizes.every((size) => size <= 1000));
  });

  test('ignores Range and refuses HEAD', async () => {
    const full = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`);
    const ranged = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`, { headers: { range: 'bytes=100-' } });
    assert.equal(ranged.status, 200);
    assert.equal(ranged.headers['content-range'], undefined);
    assert.deepEqual(ranged.body, full.body);
    const head = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`, { method: 'HEAD' });
    assert.equal(head.status, 405);
  });

  test('answers 404 with a Chinese detail for an unknown meeting', async () => {
    const result = await rawRequest(`${url}/api/v1/meetings/nope/download-package-direct`);
    assert.equal(result.status, 404);
    assert.equal(result.headers['content-type'], 'application/json');
    // Raw UTF-8, not \u escapes.
    assert.equal(result.body.toString('utf8'), '{"detail":"会议 nope 不存在"}');
  });

  test('rebuilds an ended meeting on every request', async () => {
    // A meeting not started keeps the build of its first download (see meetings.test.ts); an
    // ended one gets a one-off build each time.
    master.addMeeting({ id: 'ended-1', title: 'Ended meeting' });
    await master.startMeeting('ended-1');
    await master.endMeeting('ended-1');
    const first = await rawRequest(`${url}/api/v1/meetings/ended-1/download-package-direct`);
    const second = await rawRequest(`${url}/api/v1/meetings/ended-1/download-package-direct`);
    assert.equal(first.status, 200);
    assert.ok(endsWithZipEndRecord(first.body) && endsWithZipEndRecord(second.body));
    assert.notDeepEqual(first.body, second.body);
    assert.equal(master.meeting('ended-1')?.status, '已结束');
  });

  test('serves the same bytes while active and new bytes after an end and restart', async () => {
    const a = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`);
    master.setDocuments('m1', [{ name: '新文件 New.pdf', content: '%PDF-1.4 replaced' }]);
    const b = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`);
    assert.deepEqual(a.body, b.body);
    const packagePath = master.meeting('m1')?.package;
    assert.ok(packagePath);
    await master.endMeeting('m1');
    assert.equal(master.meeting('m1')?.package, null);
    await master.startMeeting('m1');
    const c = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`);
    assert.notDeepEqual(a.body, c.body);
    // Documents are entries agenda_N/<upload-uuid>.pdf; README.txt lists their names.
    assert.ok(readmeOf(c.body).includes('新文件 New.pdf'));
    assert.equal(master.meeting('m1')?.activations, 2);
  });

  test('counts downloads and bytes per meeting', async () => {
    master.resetStats();
    const result = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`);
    const stats = master.stats();
    assert.equal(stats.packageDownloads['m1']?.started, 1);
    assert.equal(stats.packageDownloads['m1']?.completed, 1);
    assert.equal(stats.packageBytesSent, result.body.length);
    assert.equal(stats.requestsTotal, 1);
    assert.equal(stats.requestLog[0]?.path, '/api/v1/meetings/m1/download-package-direct');
    assert.equal(stats.requestLog[0]?.status, 200);
  });

  test('the tablets URL serves the zip itself by default', async () => {
    const result = await rawRequest(`${url}/api/v1/meetings/m1/download-package`);
    assert.equal(result.status, 200);
    assert.equal(sha256(result.body), master.meeting('m1')?.package?.sha256);
    assert.equal(master.stats().tabletDownloads['m1']?.completed, 1);
  });

  test('download-nodes-info lists the master first and answers 404 unless active', async () => {
    await postJson(`${url}/api/v1/nodes/register`, { node_id: 'n1', address: '10.0.0.5:8080', status: 'online' });
    const info = await rawRequest(`${url}/api/v1/meetings/m1/download-nodes-info`);
    assert.deepEqual(parse(info), [
      { ip: `127.0.0.1:${port}`, download_url: `${url}/api/v1/meetings/m1/download-package` },
      { ip: '10.0.0.5:8080', download_url: 'http://10.0.0.5:8080/api/v1/meetings/m1/download-package' },
    ]);
    const inactive = await rawRequest(`${url}/api/v1/meetings/meeting-2024-01/download-nodes-info`);
    assert.equal(inactive.status, 404);
  });

  test('root answers HTML', async () => {
    const result = await rawRequest(`${url}/`);
    assert.equal(result.status, 200);
    assert.match(String(result.headers['content-type']), /^text\/html/);
  });
});

describe('node registry', () => {
  test('register, unregister and their errors', () =>
    withMaster(FAST, async (master, url) => {
      const ok = await postJson(`${url}/api/v1/nodes/register`, { node_id: 'n1', address: '127.0.0.1:9001', status: 'online' });
      assert.equal(ok.status, 200);
      assert.deepEqual(parse(ok), { status: 'success', message: 'Node n1 registered' });
      assert.ok(ok.headers['content-length']);

      const missing = await postJson(`${url}/api/v1/nodes/register`, { node_id: 'n2', status: 'online' });
      assert.equal(missing.status, 422);
      const detail = (parse(missing) as { detail: { loc: unknown[] }[] }).detail;
      assert.ok(Array.isArray(detail));
      assert.deepEqual(detail[0]?.loc, ['body', 'address']);

      const empty = await postJson(`${url}/api/v1/nodes/register`, { node_id: '', address: '127.0.0.1:1', status: 'online' });
      assert.equal(empty.status, 400);
      assert.deepEqual(parse(empty), { detail: 'Invalid node data' });

      const notJson = await rawRequest(`${url}/api/v1/nodes/register`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: '{"node_id":"n3","address":"a:1","status":"online"}',
      });
      assert.equal(notJson.status, 422);

      assert.deepEqual(parse(await rawRequest(`${url}/api/v1/nodes/available`)), { count: 1, nodes: ['127.0.0.1:9001'] });

      const gone = await postJson(`${url}/api/v1/nodes/unregister`, { node_id: 'n1' });
      assert.deepEqual(parse(gone), { status: 'success', message: 'Node n1 unregistered' });
      const unknown = await postJson(`${url}/api/v1/nodes/unregister`, { node_id: 'n1' });
      assert.equal(unknown.status, 404);
      assert.deepEqual(parse(unknown), { detail: 'Node n1 not found' });
      assert.equal(master.nodes().length, 0);
    }));

  test('a heartbeat from an unknown node re-registers it and keeps extra fields', () =>
    withMaster(FAST, async (master, url) => {
      const result = await postJson(
        `${url}/api/v1/nodes/heartbeat`,
        beat('n9', '127.0.0.1:9009', [{ id: 'm1', title: '会议' }], ['m1', 'other'], { load: { activeDownloads: 3 } }),
      );
      assert.equal(result.status, 200);
      const body = parse(result) as { status: string; timestamp: number };
      assert.equal(body.status, 'success');
      assert.equal(typeof body.timestamp, 'number');
      const [node] = master.nodes();
      assert.equal(node?.nodeId, 'n9');
      assert.deepEqual(node?.syncedMeetings, ['m1']);
      assert.deepEqual(node?.load, { activeDownloads: 3 });
      const list = parse(await rawRequest(`${url}/api/v1/nodes/list`)) as Record<string, unknown>[];
      assert.equal(list[0]?.['node_id'], 'n9');
      assert.deepEqual(list[0]?.['active_meetings'], [{ id: 'm1', title: '会议' }]);
      assert.equal(master.stats().heartbeats, 1);

      // Registering again resets the meeting lists.
      await postJson(`${url}/api/v1/nodes/register`, { node_id: 'n9', address: '127.0.0.1:9009', status: 'online' });
      assert.deepEqual(master.nodes()[0]?.syncedMeetings, []);
      assert.deepEqual(master.nodes()[0]?.activeMeetings, []);
    }));

  test('a null title answers 500 and breaks /list until a valid heartbeat', () =>
    withMaster(FAST, async (_master, url) => {
      await postJson(`${url}/api/v1/nodes/register`, { node_id: 'good', address: '127.0.0.1:9001', status: 'online' });
      const bad = await postJson(`${url}/api/v1/nodes/heartbeat`, beat('bad', '127.0.0.1:9002', [{ id: 'm1', title: null }], []));
      assert.equal(bad.status, 500);
      assert.equal((await rawRequest(`${url}/api/v1/nodes/list`)).status, 500);
      const missingTitle = await postJson(`${url}/api/v1/nodes/heartbeat`, {
        node_id: 'bad', address: '127.0.0.1:9002', status: 'online', active_meetings: [{ id: 'm1' }], synced_meetings: [],
      });
      assert.equal(missingTitle.status, 500);
      assert.equal((await rawRequest(`${url}/api/v1/nodes/available`)).status, 200);
      const fixed = await postJson(`${url}/api/v1/nodes/heartbeat`, beat('bad', '127.0.0.1:9002', [{ id: 'm1', title: 'ok' }], []));
      assert.equal(fixed.status, 200);
      const list = await rawRequest(`${url}/api/v1/nodes/list`);
      assert.equal(list.status, 200);
      assert.equal((parse(list) as unknown[]).length, 2);
    }));

  test('a broken node stops breaking /list once it expires', () =>
    withMaster({ ...FAST, nodeExpiryMs: 150 }, async (_master, url) => {
      await postJson(`${url}/api/v1/nodes/heartbeat`, beat('bad', '127.0.0.1:9002', [{ id: 'm1', title: 7 }], []));
      assert.equal((await rawRequest(`${url}/api/v1/nodes/list`)).status, 500);
      await waitFor(async () => (await rawRequest(`${url}/api/v1/nodes/list`)).status === 200, '/list to recover');
    }));

  test('nodes vanish from /list and /available after the expiry and are then deleted', () =>
    withMaster({ ...FAST, nodeExpiryMs: 200, nodeSweepIntervalMs: 50 }, async (master, url) => {
      await postJson(`${url}/api/v1/nodes/register`, { node_id: 'n1', address: '127.0.0.1:9001', status: 'online' });
      assert.equal((parse(await rawRequest(`${url}/api/v1/nodes/list`)) as unknown[]).length, 1);
      await waitFor(
        async () => (parse(await rawRequest(`${url}/api/v1/nodes/available`)) as { count: number }).count === 0,
        'expiry',
      );
      assert.deepEqual(parse(await rawRequest(`${url}/api/v1/nodes/list`)), []);
      await waitFor(() => master.nodes().length === 0, 'deletion');
    }));
});

describe('active meetings token', () => {
  test('changes only after every online node reported the meeting synced', () =>
    withMaster(FAST, async (master, url) => {
      const status = async () => parse(await rawRequest(`${url}/api/v1/meetings/status/node`)) as {
        id: string; active_meetings: { id: string; title: string }[]; timestamp: number;
      };
      const initial = await status();
      assert.deepEqual(initial.active_meetings, []);
      const response = await rawRequest(`${url}/api/v1/meetings/status/node`);
      assert.ok(response.headers['content-length']);

      await postJson(`${url}/api/v1/nodes/register`, { node_id: 'n1', address: '127.0.0.1:9001', status: 'online' });
      master.addMeeting({ id: 'm1', title: '第一季度工作会议' });
      await master.startMeeting('m1');
      const listed = await status();
      assert.deepEqual(listed.active_meetings, [{ id: 'm1', title: '第一季度工作会议' }]);

      // Many check intervals pass; synced without being listed as active does not count.
      await postJson(`${url}/api/v1/nodes/heartbeat`, beat('n1', '127.0.0.1:9001', [], ['m1']));
      await sleep(200);
      assert.equal((await status()).id, initial.id);

      await postJson(`${url}/api/v1/nodes/heartbeat`, beat('n1', '127.0.0.1:9001', [{ id: 'm1', title: '第一季度工作会议' }], ['m1']));
      await waitFor(async () => (await status()).id !== initial.id, 'token change');
      const changed = await status();

      await master.endMeeting('m1');
      await sleep(100);
      const afterEnd = await status();
      assert.deepEqual(afterEnd.active_meetings, []);
      assert.equal(afterEnd.id, changed.id);
      assert.equal(master.stats().tokenChanges, 1);
    }));

  test('changes after the maximum wait when a node never reports', () =>
    withMaster({ ...FAST, tokenMaxWaitMs: 150 }, async (master, url) => {
      await postJson(`${url}/api/v1/nodes/register`, { node_id: 'lazy', address: '127.0.0.1:9001', status: 'online' });
      const before = master.token();
      master.addMeeting({ id: 'm1', title: 'x' });
      await master.startMeeting('m1');
      await waitFor(() => master.token() !== before, 'token change after max wait');
    }));

  test('legacy form answers a single active_meeting', () =>
    withMaster({ ...FAST, legacyStatus: true }, async (master, url) => {
      assert.deepEqual(parse(await rawRequest(`${url}/api/v1/meetings/status/node`)), { active_meeting: null });
      master.addMeeting({ id: 'm1', title: 'x' });
      await master.startMeeting('m1');
      assert.deepEqual(parse(await rawRequest(`${url}/api/v1/meetings/status/node`)), { active_meeting: 'm1' });
    }));
});

describe('redirect mode', () => {
  test('sends tablets to the least busy synced node, or serves itself without one', () =>
    withMaster({ ...FAST, redirectToNodes: true }, async (master, url) => {
      master.addMeeting({ id: 'm1', title: 'x' });
      await master.startMeeting('m1');
      const self = await rawRequest(`${url}/api/v1/meetings/m1/download-package`);
      assert.equal(self.status, 200);
      assert.ok(endsWithZipEndRecord(self.body));

      const active = [{ id: 'm1', title: 'x' }];
      await postJson(`${url}/api/v1/nodes/heartbeat`, beat('busy', '127.0.0.1:9001', active, ['m1'], { load: { activeDownloads: 5 } }));
      await postJson(`${url}/api/v1/nodes/heartbeat`, beat('idle', '127.0.0.1:9002', active, ['m1'], { load: { activeDownloads: 0 } }));
      await postJson(`${url}/api/v1/nodes/heartbeat`, beat('unsynced', '127.0.0.1:9003', active, []));
      const first = await rawRequest(`${url}/api/v1/meetings/m1/download-package`);
      assert.equal(first.status, 302);
      assert.equal(first.headers['location'], 'http://127.0.0.1:9002/api/v1/meetings/m1/download-package');

      const targets = [];
      for (let i = 0; i < 8; i += 1) {
        targets.push((await rawRequest(`${url}/api/v1/meetings/m1/download-package`)).headers['location']);
      }
      // Redirects handed out count as load until the next heartbeat: the busy node gets some too.
      assert.ok(targets.some((location) => location?.includes(':9001')));
      assert.ok(!targets.some((location) => location?.includes(':9003')));
      // idle: 0 + 5 redirects ties busy's 5, then they alternate.
      assert.deepEqual(master.stats().redirectsByNode, { '127.0.0.1:9002': 7, '127.0.0.1:9001': 2 });

      const direct = await rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`);
      assert.equal(direct.status, 200);
    }));
});

describe('faults', () => {
  let master: ReferenceMaster;
  let url: string;
  let tempDir: string;
  const packageUrl = () => `${url}/api/v1/meetings/m1/download-package-direct`;
  before(async () => {
    tempDir = await mkdtemp(join(tmpdir(), 'reference-master-test-'));
    master = createReferenceMaster({ tempDir, ...FAST, faultFlushDelayMs: 20 });
    ({ url } = await master.listen());
    master.addMeeting({ id: 'm1', title: '会议', packageSizeBytes: 256 * 1024 });
    await master.startMeeting('m1');
  });
  after(async () => {
    await master.close();
    await rm(tempDir, { recursive: true, force: true });
  });

  test('status code, once', async () => {
    master.setFault('status', { kind: 'status', code: 503, times: 1 });
    assert.equal((await rawRequest(`${url}/api/v1/meetings/status/node`)).status, 503);
    assert.equal((await rawRequest(`${url}/api/v1/meetings/status/node`)).status, 200);
  });

  test('invalid JSON', async () => {
    master.setFault('status', { kind: 'invalidJson', times: 1 });
    const result = await rawRequest(`${url}/api/v1/meetings/status/node`);
    assert.equal(result.status, 200);
    assert.throws(() => parse(result));
  });

  test('HTML error page', async () => {
    master.setFault('heartbeat', { kind: 'html', times: 1 });
    const result = await postJson(`${url}/api/v1/nodes/heartbeat`, beat('n1', 'a:1', [], []));
    assert.equal(result.status, 502);
    assert.match(String(result.headers['content-type']), /text\/html/);
    assert.equal(master.nodes().length, 0);
  });

  test('huge body', async () => {
    master.setFault('status', { kind: 'hugeBody', bytes: 3 * 1024 * 1024, times: 1 });
    const result = await rawRequest(`${url}/api/v1/meetings/status/node`);
    assert.equal(result.status, 200);
    assert.equal(result.body.length, 3 * 1024 * 1024);
    assert.equal(result.headers['content-length'], undefined);
    assert.ok(parse(result));
  });

  test('hang gets no answer', async () => {
    master.setFault('register', { kind: 'hang', times: 1 });
    const result = await rawRequest(`${url}/api/v1/nodes/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ node_id: 'n1', address: 'a:1', status: 'online' }),
      giveUpAfterIdleMs: 300,
    });
    assert.equal(result.status, 0);
    assert.ok(result.noResponse);
  });

  test('stalled body', async () => {
    master.setFault('package', { kind: 'stallBody', afterBytes: 5000, times: 1 });
    const result = await rawRequest(packageUrl(), { giveUpAfterIdleMs: 300 });
    assert.equal(result.status, 200);
    assert.equal(result.body.length, 5000);
    assert.equal(result.complete, false);
    assert.equal(result.failure, 'gave-up');
  });

  test('reset mid body', async () => {
    master.setFault('package', { kind: 'resetMidBody', afterBytes: 40_000, times: 1 });
    const result = await rawRequest(packageUrl());
    assert.equal(result.status, 200);
    assert.equal(result.complete, false);
    assert.ok(result.body.length <= 40_000);
    assert.notEqual(result.failure, 'gave-up');
    const stats = master.stats();
    assert.ok((stats.packageDownloads['m1']?.faulted ?? 0) >= 1);
  });

  test('chunked body cut without its terminator', async () => {
    master.setFault('package', { kind: 'cutChunked', afterBytes: 30_000, times: 1 });
    const result = await rawRequest(packageUrl());
    assert.equal(result.status, 200);
    assert.equal(result.complete, false);
    assert.equal(result.body.length, 30_000);
    assert.notEqual(result.failure, 'gave-up');
  });

  test('cut chunked on the wire: FIN after data, no 0-chunk', async () => {
    master.setFault('package', { kind: 'cutChunked', afterBytes: 10, times: 1 });
    const port = Number(new URL(url).port);
    const { bytes, error } = await rawWire(port, '/api/v1/meetings/m1/download-package-direct');
    assert.equal(error, undefined);
    const text = bytes.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(!text.endsWith('0\r\n\r\n'));
    // One whole 10-byte chunk (with its CRLF), then the connection ends: no `0\r\n\r\n`.
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);
    assert.equal(body.length, 'a\r\n'.length + 10 + 2);
    assert.ok(body.startsWith('a\r\nPK\x03\x04'));
  });

  test('not a zip', async () => {
    master.setFault('package', { kind: 'notZip', bytes: 5000, times: 1 });
    const result = await rawRequest(packageUrl());
    assert.equal(result.status, 200);
    assert.equal(result.headers['content-type'], 'application/zip');
    assert.equal(result.body.length, 5000);
    assert.ok(!endsWithZipEndRecord(result.body));
  });

  test('a fault can target one meeting and is cleared after its times', async () => {
    master.setFault('package', { kind: 'status', code: 500, meetingId: 'other', times: 1 });
    const unaffected = await rawRequest(packageUrl());
    assert.equal(unaffected.status, 200);
    assert.ok(master.faults().package);
    master.setFault('package', null);
    assert.equal(master.faults().package, undefined);
    assert.throws(() => master.setFault('package', { kind: 'stallBody', afterBytes: -1 }));
  });
});

describe('close', () => {
  test('ends hanging and stalled responses and deletes temporary packages', () =>
    withMaster(FAST, async (master, url) => {
      master.addMeeting({ id: 'm1', title: 'x' });
      await master.startMeeting('m1');
      master.setFault('status', { kind: 'hang' });
      master.setFault('package', { kind: 'stallBody', afterBytes: 100 });
      const hanging = rawRequest(`${url}/api/v1/meetings/status/node`, { giveUpAfterIdleMs: 60_000 });
      let stalledHeadersReceived = false;
      const stalled = rawRequest(`${url}/api/v1/meetings/m1/download-package-direct`, {
        giveUpAfterIdleMs: 60_000,
        onResponse: () => {
          stalledHeadersReceived = true;
        },
      });
      // Close only once the stalled response's headers reached the client: under load the
      // request can be counted before its headers leave, and closing then is no "stalled body".
      await waitFor(
        () => (master.stats().requests['package'] ?? 0) === 1 && master.stats().requests['status'] === 1 && stalledHeadersReceived,
        'requests',
      );
      await master.close();
      const [hung, stall] = await Promise.all([hanging, stalled]);
      assert.equal(hung.status, 0);
      assert.ok(hung.noResponse && hung.noResponse !== 'gave-up');
      assert.equal(stall.status, 200);
      assert.equal(stall.complete, false);
      assert.notEqual(stall.failure, 'gave-up');
    }));
});

describe('admin HTTP API', () => {
  test('creates, starts and ends meetings, reads stats and sets faults', () =>
    withMaster(FAST, async (master, url) => {
      const created = await postJson(`${url}/admin/meetings`, { id: 'meeting-2024-01', title: '第二次会议' });
      assert.equal(created.status, 201);
      assert.equal((await postJson(`${url}/admin/meetings`, { id: 'meeting-2024-01', title: 'dup' })).status, 409);
      const started = parse(await postJson(`${url}/admin/meetings/meeting-2024-01/start`, {})) as { status: string };
      assert.equal(started.status, '进行中');
      const status = parse(await rawRequest(`${url}/api/v1/meetings/status/node`)) as { active_meetings: unknown[] };
      assert.deepEqual(status.active_meetings, [{ id: 'meeting-2024-01', title: '第二次会议' }]);

      const fault = await postJson(`${url}/admin/faults`, { route: 'status', fault: { kind: 'status', code: 404 } });
      assert.equal(fault.status, 200);
      assert.equal((await rawRequest(`${url}/api/v1/meetings/status/node`)).status, 404);
      await postJson(`${url}/admin/faults`, { route: 'status', fault: null });
      assert.equal((await postJson(`${url}/admin/faults`, { route: 'nope', fault: null })).status, 400);

      const ended = parse(await postJson(`${url}/admin/meetings/meeting-2024-01/end`, {})) as { status: string };
      assert.equal(ended.status, '已结束');
      const meetings = parse(await rawRequest(`${url}/admin/meetings`)) as { id: string }[];
      assert.equal(meetings[0]?.id, 'meeting-2024-01');

      const stats = parse(await rawRequest(`${url}/admin/stats`)) as { requestsTotal: number; requests: Record<string, number> };
      // Admin calls are not counted as upstream traffic.
      assert.equal(stats.requestsTotal, 2);
      assert.equal(stats.requests['status'], 2);
      assert.equal(master.stats().requestLog.every((entry) => !entry.path.startsWith('/admin')), true);
    }));
});

describe('sample master and packages', () => {
  test('startSampleMaster serves two active sample meetings and cleans up', async () => {
    const sample = await startSampleMaster({ ...FAST });
    try {
      const status = parse(await rawRequest(`${sample.url}/api/v1/meetings/status/node`)) as { active_meetings: { title: string }[] };
      assert.equal(status.active_meetings.length, 2);
      assert.ok(status.active_meetings.some((meeting) => meeting.title === '第一季度工作会议'));
    } finally {
      await sample.close();
    }
  });

  test('startSampleMaster adds a meeting scheduled hours ahead, not started, listed but not active', async () => {
    const sample = await startSampleMaster({ ...FAST });
    try {
      assert.equal(sample.upcomingMeetingIds.length, 1);
      const upcoming = sample.master.meeting(sample.upcomingMeetingIds[0] ?? '');
      assert.equal(upcoming?.status, '未开始');
      assert.ok((upcoming?.timeMs ?? 0) > Date.now() + 3600_000);
      const listed = parse(await rawRequest(`${sample.url}/api/v1/meetings/`)) as { id: string; status: string }[];
      assert.deepEqual(listed.map((m) => m.status).sort(), ['未开始', '进行中', '进行中']);
      assert.ok(!sample.meetingIds.includes(upcoming?.id ?? ''));
    } finally {
      await sample.close();
    }
  });

  test('packages are padded to about the requested size and hashed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reference-master-test-'));
    try {
      const size = 3 * 1024 * 1024;
      const built = await buildMeetingPackage({ dir, meetingId: 'm1', title: '会议', packageSizeBytes: size });
      assert.ok(built.size <= size && built.size > size - 8192, String(built.size));
      await access(built.path);
      const second = await buildMeetingPackage({ dir, meetingId: 'm1', title: '会议' });
      assert.notEqual(second.sha256, built.sha256);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
