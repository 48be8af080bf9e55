/**
 * Hostile input against a running node: generated meeting ids and paths (fast-check, > 10,000)
 * full of path tricks must never reach outside storage/ (sentinel files planted next to it are
 * never served) and never produce a 5xx; oversized headers answer 431; malformed Range and absurd
 * conditional headers are handled as RFC 9110 says, never with an error.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { MEETING_ID_MAX_LENGTH, isValidMeetingId } from '../src/meeting-id.ts';
import { cleanupStack, masterSha, removeDir, startMaster, startNode, tempDir, testConfig, waitFor } from './helpers.ts';

const MARKER = `SENTINEL-${randomBytes(16).toString('hex')}`;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request on a keep-alive agent with the path exactly as given (no normalisation). */
function send(agent: Agent, port: number, rawPath: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: rawPath, method: options.method ?? 'GET', headers: options.headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Bytes straight onto a socket: request lines no HTTP client library would send. */
function sendRaw(port: number, request: Buffer | string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The server may reset after answering a request it refuses to read further.
      if (error.code === 'ECONNRESET' && chunks.length) return;
      reject(error);
    });
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: match ? Number(match[1]) : 0, text });
    });
    socket.write(request);
    socket.end();
  });
}

/** The node, one active meeting synced, and sentinel files planted around storage/ and public/. */
async function hostileSetup(t: Parameters<typeof cleanupStack>[0]) {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Target', packageSizeBytes: 64_000 });
  await m.master.startMeeting('m1');
  const dir = await tempDir('edge-hostile-');
  defer(() => removeDir(dir));
  const publicDir = path.join(dir, 'public');
  await mkdir(publicDir, { recursive: true });
  await writeFile(path.join(publicDir, 'index.html'), '<!doctype html><title>panel</title>');
  // Sentinels: beside storage/ and public/, in a folder named like a meeting folder, and named like
  // the files the node serves.
  await writeFile(path.join(dir, 'secret.txt'), MARKER);
  await writeFile(path.join(dir, 'package.zip'), MARKER);
  await mkdir(path.join(dir, 'meeting_evil'), { recursive: true });
  await writeFile(path.join(dir, 'meeting_evil', 'package.zip'), MARKER);
  await writeFile(path.join(dir, 'meeting_evil', 'manifest.json'), JSON.stringify({ marker: MARKER }));
  const configPath = path.join(dir, 'node_config.json');
  await writeFile(configPath, JSON.stringify(testConfig(m.port, { syncInterval: 3600, heartbeat: { interval: 300 } }), null, 2));
  const n = await startNode(m.port, { dir, node: { publicDir } });
  defer(() => n.stop());
  await waitFor('m1 synced', () => n.node.sync.isServable('m1'), 15_000);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  defer(() => agent.destroy());
  const port = Number(new URL(n.url).port);
  return { m, n, dir, agent, port, sha: masterSha(m.master, 'm1') };
}

/** Path pieces that have escaped some server somewhere. */
const TRICKS = [
  '..',
  '.',
  '%2e%2e',
  '%2E%2E',
  '.%2e',
  '%2e.',
  '%252e%252e',
  '%25252e%25252e',
  '%2f',
  '%2F',
  '%252f',
  '%5c',
  '%5C',
  '\\',
  '..\\',
  '..%5c',
  '%00',
  '%2500',
  '%c0%ae',
  '%c0%af',
  '%c0%2e',
  '%e0%80%ae',
  '%f0%80%80%ae',
  '%c1%9c',
  '%c1%1c',
  '%u002e',
  '%uff0e',
  '．．',
  '..;',
  ';',
  '%',
  '%%',
  '%zz',
  '%2',
  '?',
  '#',
  '%3f',
  '%23',
  '~',
  '*',
  'meeting_evil',
  'meeting_',
  'secret.txt',
  'package.zip',
  'manifest.json',
  'storage',
  'public',
  'm1',
  'evil',
];

const SEPARATORS = ['/', '%2f', '%2F', '%252f', '\\', '%5c', '', '//', '/./', '%00/'];

const trickyId = fc
  .array(fc.tuple(fc.constantFrom(...TRICKS), fc.constantFrom(...SEPARATORS)), { minLength: 1, maxLength: 10 })
  .map((parts) => parts.map(([piece, sep]) => piece + sep).join(''));

/** Any string, percent-encoded (so the server decodes it), or raw when it is already path-safe. */
const encodedString = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => encodeURIComponent(s)),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => {
    try {
      return encodeURIComponent(s);
    } catch {
      // Lone surrogates: encode their UTF-16 code units as bytes, which is what a hostile client would do.
      return [...s].map((c) => `%${(c.charCodeAt(0) & 0xff).toString(16).padStart(2, '0')}`).join('');
    }
  }),
  fc.stringMatching(/^[\x21-\x7e]{1,40}$/).map((s) => s.replace(/[?#]/g, encodeURIComponent)),
  fc.uint8Array({ maxLength: 24 }).map((bytes) => [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')),
);

const longId = fc.integer({ min: MEETING_ID_MAX_LENGTH + 1, max: 12_000 }).chain((length) =>
  fc.constantFrom('a', '9', '-', '.', '%2e', 'ab/').map((unit) => unit.repeat(Math.ceil(length / unit.length)).slice(0, length)),
);

const anyId = fc.oneof(
  { weight: 5, arbitrary: trickyId },
  { weight: 3, arbitrary: encodedString },
  { weight: 1, arbitrary: longId },
  // Traversal to the sentinels by their exact relative location.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 8 }), fc.constantFrom('..', '%2e%2e', '%252e%252e', '.%2e'), fc.constantFrom('/', '%2f', '%5c', '\\'))
      .chain(([depth, dots, sep]) =>
        fc.constantFrom('secret.txt', 'package.zip', `meeting_evil${sep}package.zip`, 'meeting_evil', `evil${sep}..${sep}..${sep}secret.txt`).map(
          (target) => `${`${dots}${sep}`.repeat(depth)}${target}`,
        ),
      ),
  },
);

const ROUTES = [
  (id: string) => `/api/v1/meetings/${id}/download-package`,
  (id: string) => `/api/meetings/${id}/download`,
  (id: string) => `/static/${id}`,
  (id: string) => `/api/v1/meetings/m1/download-package/${id}`,
  (id: string) => `/${id}`,
];

/**
 * What a safe answer to a hostile path looks like. 401/429: a path that normalises out of the
 * download routes lands in the admin API, which wants a token and rate-limits failed attempts.
 */
const SAFE_REFUSALS = new Set([400, 401, 404, 405, 414, 429, 431]);

/**
 * The id the download route sees for this request target, or null when it is not a download
 * route. The server parses the target as a WHATWG URL, which removes dot segments (`..`, `%2e%2e`)
 * before routing: such a path reaches some other route (404/401), never the download handler.
 */
function decodedId(rawPath: string): string | null {
  let pathname: string;
  try {
    pathname = new URL(rawPath, 'http://node').pathname;
  } catch {
    return null;
  }
  const match = /^\/api\/v1\/meetings\/([^/]+)\/download-package$/.exec(pathname) ?? /^\/api\/meetings\/([^/]+)\/download$/.exec(pathname);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1]!);
  } catch {
    return match[1]!;
  }
}

test('10,000+ generated ids and paths: no escape from storage/, no 5xx', { timeout: 240_000 }, async (t) => {
  const { n, agent, port, sha, m } = await hostileSetup(t);
  const statuses = new Map<number, number>();
  let requests = 0;
  const pollsBefore = m.master.stats().requests.status ?? 0;

  const failures: string[] = [];
  const outcome = await fc.check(
    fc.asyncProperty(anyId, fc.integer({ min: 0, max: ROUTES.length - 1 }), fc.constantFrom('GET', 'HEAD'), async (id, route, method) => {
      try {
        await checkOne(id, route, method);
      } catch (error) {
        failures.push((error as Error).message);
        throw error;
      }
    }),
    { numRuns: 11_000, seed: Number(process.env.EDGE_FUZZ_SEED ?? Date.now() % 2 ** 31) },
  );
  assert.equal(outcome.failed, false, `${fc.defaultReportMessage(outcome) ?? ''}\nfirst failure: ${failures[0] ?? ''}\nlast failure: ${failures.at(-1) ?? ''}`);
  async function checkOne(id: string, route: number, method: string): Promise<void> {
      const rawPath = ROUTES[route]!(id);
      let answer: Answer;
      try {
        answer = await send(agent, port, rawPath, { method });
      } catch (error) {
        // node:http refuses to send some paths at all (characters outside 0x21-0xff).
        if ((error as NodeJS.ErrnoException).code === 'ERR_UNESCAPED_CHARACTERS') return;
        throw error;
      }
      requests++;
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      assert.ok(answer.status < 500, `${method} ${rawPath} answered ${answer.status}: ${answer.body.toString('utf8').slice(0, 200)}`);
      assert.ok(!answer.body.includes(MARKER), `${method} ${rawPath} served a sentinel file`);
      const id2 = decodedId(rawPath);
      if (answer.status === 200 || answer.status === 206 || answer.status === 304) {
        if (id2 !== null) {
          // Only a valid id of a meeting the node holds may succeed, with that meeting's bytes.
          assert.ok(isValidMeetingId(id2), `${rawPath}: success for an invalid id`);
          assert.equal(id2, 'm1', `${rawPath}: success for a meeting the node does not hold`);
          if (method === 'GET' && answer.status === 200) assert.equal(createHash('sha256').update(answer.body).digest('hex'), sha);
        } else {
          assert.ok(rawPath.startsWith('/static/') || rawPath === '/' || rawPath.startsWith('//'), `${rawPath}: unexpected success ${answer.status}`);
        }
        return;
      }
      if (answer.status === 302 || answer.status === 301) {
        assert.ok(!String(answer.headers.location ?? '').includes('..'), `${rawPath}: redirect outside`);
        return;
      }
      assert.ok(SAFE_REFUSALS.has(answer.status), `${method} ${rawPath} answered ${answer.status}`);
      if (id2 !== null && !isValidMeetingId(id2) && answer.status !== 431 && answer.status !== 414) {
        assert.equal(answer.status, 400, `${rawPath}: an invalid id is refused with 400`);
      }
  }
  t.diagnostic(`${requests} requests; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
  assert.ok(requests >= 10_000, `at least 10,000 requests reached the node (${requests})`);
  // Still healthy and serving after the flood.
  const after = await send(agent, port, '/api/v1/meetings/m1/download-package');
  assert.equal(after.status, 200);
  assert.equal(createHash('sha256').update(after.body).digest('hex'), sha);
  // Invalid ids never reach the master; valid unknown ones cause at most one poll per refresh window.
  const polls = (m.master.stats().requests.status ?? 0) - pollsBefore;
  assert.ok(polls <= 60, `the flood caused ${polls} status polls`);
  assert.ok(n.node.store.list().length === 1);
});

// Found by the fuzzing above: Hono answers HEAD by wrapping the GET handler's result in a new
// Response, which @hono/node-server then tried to send over the raw answer (ERR_HTTP_HEADERS_SENT,
// connections dropped on keep-alive). Fixed in app.ts by dispatching HEAD of downloads as GET.
test(
  'HEAD on a download route answers without an error inside the server and leaves the connection usable',
  async (t) => {
    const { agent, port } = await hostileSetup(t);
    const logged: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => {
      logged.push(args.map(String).join(' '));
    };
    let dropped = 0;
    try {
      for (let i = 0; i < 300; i++) {
        const target = i % 3 === 0 ? '/api/v1/meetings/m1/download-package' : i % 3 === 1 ? '/api/v1/meetings/a.b/download-package' : '/api/meetings/unknown-1/download';
        try {
          const answer = await send(agent, port, target, { method: 'HEAD' });
          assert.ok([200, 400, 404].includes(answer.status), `${target}: ${answer.status}`);
        } catch {
          dropped++;
        }
      }
    } finally {
      console.error = original;
    }
    assert.equal(dropped, 0, 'HEAD requests whose connection was dropped');
    assert.deepEqual(
      logged.filter((line) => line.includes('ERR_HTTP_HEADERS_SENT')),
      [],
      'errors printed by the server',
    );
  },
);

test('invalid ids are refused with 400 before any request to the master', async (t) => {
  const { m, agent, port } = await hostileSetup(t);
  // Heartbeats run on their own schedule; what an id could cause is a poll or a download.
  const lookups = () => (m.master.stats().requests.status ?? 0) + (m.master.stats().requests.package ?? 0);
  const before = lookups();
  for (const id of ['...', '..%2fsecret.txt', '%2e%2e%2fsecret.txt', 'a%00b', '%c0%ae%c0%ae', 'a'.repeat(MEETING_ID_MAX_LENGTH + 1), 'a.b', '_a', '-a', 'a%5cb', '%252e%252e']) {
    for (const route of [ROUTES[0]!, ROUTES[1]!]) {
      const answer = await send(agent, port, route(id));
      assert.equal(answer.status, 400, `${route(id)}`);
      assert.match(answer.body.toString('utf8'), /invalid meeting id/);
    }
  }
  assert.equal(lookups(), before, 'no poll or download was caused');
});

test('request lines no client library sends: raw NUL, spaces, backslashes, overlong request target', async (t) => {
  const { port } = await hostileSetup(t);
  const lines = [
    'GET /api/v1/meetings/\0/download-package HTTP/1.1',
    'GET /api/v1/meetings/../../secret.txt/download-package HTTP/1.1',
    'GET /api/v1/meetings/..\\..\\secret.txt/download-package HTTP/1.1',
    'GET /static/../../secret.txt HTTP/1.1',
    'GET /static/..\\..\\secret.txt HTTP/1.1',
    'GET /static/%2e%2e/%2e%2e/secret.txt HTTP/1.1',
    'GET /api/v1/meetings/a b/download-package HTTP/1.1',
    `GET /api/v1/meetings/${'a'.repeat(70_000)}/download-package HTTP/1.1`,
    'GET http://127.0.0.1/../secret.txt HTTP/1.1',
    'GET ../secret.txt HTTP/1.1',
    'GET /api/v1/meetings/\xc0\xae\xc0\xae/download-package HTTP/1.1',
  ];
  for (const line of lines) {
    const answer = await sendRaw(port, Buffer.from(`${line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, 'latin1'));
    assert.ok(!answer.text.includes(MARKER), `${line.slice(0, 80)}: sentinel served`);
    assert.ok(answer.status === 0 || (answer.status >= 400 && answer.status < 500), `${line.slice(0, 80)}: answered ${answer.status}`);
  }
});

test('oversized headers answer 431', async (t) => {
  const { port } = await hostileSetup(t);
  const big = 'x'.repeat(64 * 1024);
  const answer = await sendRaw(port, `GET /api/v1/meetings/m1/download-package HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${big}\r\nConnection: close\r\n\r\n`);
  assert.equal(answer.status, 431);
  const many = Array.from({ length: 3000 }, (_, i) => `X-H${i}: ${'v'.repeat(10)}`).join('\r\n');
  const answer2 = await sendRaw(port, `GET /api/v1/meetings/m1/download-package HTTP/1.1\r\nHost: 127.0.0.1\r\n${many}\r\nConnection: close\r\n\r\n`);
  assert.equal(answer2.status, 431);
});

test('malformed Range is ignored (200 whole), unsatisfiable is 416, valid is 206 with exactly those bytes', { timeout: 120_000 }, async (t) => {
  const { agent, port, sha } = await hostileSetup(t);
  const url = '/api/v1/meetings/m1/download-package';
  const whole = await send(agent, port, url);
  const size = whole.body.length;
  assert.equal(createHash('sha256').update(whole.body).digest('hex'), sha);

  const fixed: Array<[string, number]> = [
    ['bytes=abc', 200],
    ['bytes=5-1', 200],
    ['items=0-1', 200],
    ['bytes=', 200],
    ['bytes=-', 200],
    ['bytes=0-0,1-1', 200],
    ['bytes=99999999999999999999-', 200],
    ['bytes=1 - 2', 200],
    ['bytes=--1', 200],
    ['bytes=0x10-', 200],
    ['bytes=-0', 416],
    [`bytes=${size}-`, 416],
    [`bytes=${size * 10}-${size * 20}`, 416],
    ['bytes=0-0', 206],
    ['BYTES=0-9', 206],
    [`bytes=-${size * 3}`, 206],
    [`bytes=${size - 1}-${size * 5}`, 206],
  ];
  for (const [range, expected] of fixed) {
    const answer = await send(agent, port, url, { headers: { range } });
    assert.equal(answer.status, expected, `Range: ${range}`);
  }

  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.string({ maxLength: 60 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
        fc.tuple(fc.option(fc.nat({ max: size * 2 })), fc.option(fc.nat({ max: size * 2 }))).map(([a, b]) => `bytes=${a ?? ''}-${b ?? ''}`),
        fc.array(fc.tuple(fc.nat({ max: size }), fc.nat({ max: size })), { minLength: 1, maxLength: 5 }).map(
          (pairs) => `bytes=${pairs.map(([a, b]) => `${a}-${b}`).join(',')}`,
        ),
      ),
      async (range) => {
        const answer = await send(agent, port, url, { headers: { range } });
        assert.ok([200, 206, 416].includes(answer.status), `Range: ${JSON.stringify(range)} answered ${answer.status}`);
        if (answer.status === 200) assert.equal(createHash('sha256').update(answer.body).digest('hex'), sha, `Range: ${range}: whole body`);
        if (answer.status === 206) {
          const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(answer.headers['content-range']));
          assert.ok(match, `Range: ${range}: Content-Range ${String(answer.headers['content-range'])}`);
          const [start, end, total] = [Number(match[1]), Number(match[2]), Number(match[3])];
          assert.equal(total, size);
          assert.ok(start <= end && end < size);
          assert.ok(answer.body.equals(whole.body.subarray(start, end + 1)), `Range: ${range}: the bytes asked for`);
        }
        if (answer.status === 416) assert.equal(answer.headers['content-range'], `bytes */${size}`);
      },
    ),
    { numRuns: 1_500 },
  );
});

test('absurd If-* values are ignored safely: never 5xx, never a 304 or 412 they did not earn', { timeout: 120_000 }, async (t) => {
  const { agent, port, sha } = await hostileSetup(t);
  const url = '/api/v1/meetings/m1/download-package';
  const etag = `"${sha}"`;
  const garbage = fc.oneof(
    fc.string({ maxLength: 200 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
    fc.constantFrom(
      '-1',
      '0',
      '99999999999999999999',
      'Thu, 01 Jan 99999 00:00:00 GMT',
      'Fri, 31 Dec 9999 23:59:59 GMT',
      'Mon, 32 Jan 2024 00:00:00 GMT',
      'Sun, 06 Nov 1994 08:49:37 GMT',
      'W/"x"',
      '"',
      '""',
      `W/${etag}x`,
      `${etag.slice(0, -1)}`,
      'null',
      'undefined',
      ',,,,',
      '"a", "b", "c"',
      'x'.repeat(7000),
    ),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range'),
      garbage,
      fc.boolean(),
      async (name, value, withRange) => {
        const headers: Record<string, string> = { [name]: value };
        if (withRange) headers.range = 'bytes=0-9';
        const answer = await send(agent, port, url, { headers });
        assert.ok(answer.status < 500, `${name}: ${value.slice(0, 60)} answered ${answer.status}`);
        const trimmed = value.trim();
        const matchesAny = trimmed === '*' || value.includes(etag);
        switch (name) {
          case 'if-none-match':
            // Only the current ETag (weakly) or * may turn the download into a 304.
            if (answer.status === 304) assert.ok(matchesAny || value.includes(sha), `${value}: unearned 304`);
            break;
          case 'if-match':
            // A precondition that does not hold is 412 by the RFC; one that holds is served.
            if (!matchesAny) assert.equal(answer.status, 412, `If-Match ${value.slice(0, 60)}`);
            break;
          case 'if-modified-since':
            if (answer.status === 304) assert.ok(!Number.isNaN(Date.parse(value)), `${value}: 304 for a date that is not one`);
            break;
          case 'if-unmodified-since':
            if (answer.status === 412) assert.ok(!Number.isNaN(Date.parse(value)), `${value}: 412 for a date that is not one`);
            break;
          case 'if-range':
            // A validator that does not match means the whole body (never a 206 on a stale copy).
            if (withRange && trimmed !== etag && answer.status === 206) assert.fail(`If-Range ${value.slice(0, 60)}: 206 without a match`);
            break;
        }
        if (answer.status === 200) assert.equal(createHash('sha256').update(answer.body).digest('hex'), sha);
      },
    ),
    { numRuns: 2_000 },
  );
});
