import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { loadZeroCopy } from './zero-copy.ts';
import { loadBodyHandOff } from './body-handoff.ts';
import type { SendResult } from './response-outcome.ts';
import { parseHttpDate, parseRange, type RangeRequest } from './http-fields.ts';
import { sendFile as sendFileOrHandOff, type HandedOffResult, type PackageFile, type SendOptions } from './send-file.ts';

const LAST_MODIFIED = new Date('2024-05-06T07:08:09.000Z');
const LAST_MODIFIED_HTTP = 'Mon, 06 May 2024 07:08:09 GMT';

// Suite timeouts only turn a regression that hangs (a lost idle timeout, an fd whose stream never
// closes) into a failure; nothing here asserts on durations.
const SUITE_TIMEOUT = { timeout: 60_000 };

// Every body-sending suite runs three times: bytes copied through Buffers, bytes sent with the
// sendfile addon (which CI builds; zero-copy.test.ts fails if it did not load), and every body
// (of one byte or more) handed to the addon's event-loop transfers, its progress sampled often.
const ADDON = loadZeroCopy({}).zeroCopy;
const HAND_OFF = loadBodyHandOff({}, undefined, { minBytes: 1, sampleEveryMs: 5 }).handOff;
const SEND_MODES: Array<{ name: string; opts: Partial<SendOptions>; handOff?: true }> = [
  { name: 'copy', opts: { zeroCopy: null } },
  ...(ADDON ? [{ name: 'sendfile', opts: { zeroCopy: ADDON } }] : []),
  ...(ADDON && HAND_OFF ? [{ name: 'hand-off', opts: { zeroCopy: ADDON, handOff: HAND_OFF }, handOff: true as const }] : []),
];

/** sendFile's final result: a handed-off body's once the addon is done with it. */
async function sendFile(...args: Parameters<typeof sendFileOrHandOff>): Promise<SendResult> {
  const result: SendResult | HandedOffResult = await sendFileOrHandOff(...args);
  return 'handedOff' in result ? result.handedOff : result;
}

describe('parseRange', () => {
  const cases: Array<[string | undefined, number, RangeRequest]> = [
    [undefined, 100, { kind: 'none' }],
    ['bytes=0-99', 100, { kind: 'single', start: 0, end: 99 }],
    ['bytes=0-0', 100, { kind: 'single', start: 0, end: 0 }],
    ['bytes=99-99', 100, { kind: 'single', start: 99, end: 99 }],
    ['bytes=10-', 100, { kind: 'single', start: 10, end: 99 }],
    ['bytes=-10', 100, { kind: 'single', start: 90, end: 99 }],
    ['bytes=-1000', 100, { kind: 'single', start: 0, end: 99 }],
    ['bytes=50-1000', 100, { kind: 'single', start: 50, end: 99 }],
    ['bytes=0-9007199254740991', 100, { kind: 'single', start: 0, end: 99 }],
    ['bytes=007-010', 100, { kind: 'single', start: 7, end: 10 }],
    ['BYTES=1-2', 100, { kind: 'single', start: 1, end: 2 }],
    ['bytes=0-1,', 100, { kind: 'single', start: 0, end: 1 }],
    ['bytes=0-0', 1, { kind: 'single', start: 0, end: 0 }],
    ['bytes=-1', 1, { kind: 'single', start: 0, end: 0 }],
    ['bytes=100-', 100, { kind: 'unsatisfiable' }],
    ['bytes=100-200', 100, { kind: 'unsatisfiable' }],
    ['bytes=-0', 100, { kind: 'unsatisfiable' }],
    ['bytes=9007199254740991-', 100, { kind: 'unsatisfiable' }],
    ['bytes=0-', 0, { kind: 'unsatisfiable' }],
    ['bytes=0-0', 0, { kind: 'unsatisfiable' }],
    ['bytes=-5', 0, { kind: 'unsatisfiable' }],
    ['bytes=0-1,5-6', 100, { kind: 'multi' }],
    ['bytes=0-1, 5-6', 100, { kind: 'multi' }],
    ['bytes=0-1 ,\t-5', 100, { kind: 'multi' }],
    ['bytes=0-1,200-300', 100, { kind: 'multi' }],
    ['bytes=0-0,0-0', 100, { kind: 'multi' }],
  ];
  const malformed = [
    '',
    'bytes',
    'bytes=',
    'bytes=-',
    'bytes=,',
    'bytes=a-b',
    'bytes=5-1',
    'bytes=-5-',
    'bytes=1-2-3',
    'bytes=--1',
    'bytes=-1-2',
    'bytes= 0-1',
    'bytes=0 -1',
    'bytes=0- 1',
    'bytes=0-1 ',
    'bytes =0-1',
    ' bytes=0-1',
    'bytes=\t0-1',
    'bytes=+1-2',
    'bytes=0x1-2',
    'bytes=1e2-',
    'bytes=1.5-2',
    'bytes=\u0661-\u0662',
    'items=0-1',
    'bytes:0-1',
    'bytes=0-1;5-6',
    'bytes=0-1,x',
    'bytes=0-1,5-1',
    'bytes=9007199254740992-',
    'bytes=0-9007199254740992',
    'bytes=-9007199254740992',
    'bytes=-99999999999999999999999',
    `bytes=${'9'.repeat(400)}-`,
  ];

  for (const [header, size, expected] of cases) {
    test(`${JSON.stringify(header)} of ${size} bytes -> ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(parseRange(header, size), expected);
    });
  }
  for (const header of malformed) {
    test(`${JSON.stringify(header.length > 40 ? `${header.slice(0, 40)}...` : header)} is malformed`, () => {
      assert.deepEqual(parseRange(header, 100), { kind: 'malformed' });
    });
  }

  test('never throws and a single range always lies inside the file', () => {
    const header = fc.oneof(fc.string(), fc.string({ unit: fc.constantFrom(...'bytes=0123456789-, \t') }).map((s) => `bytes=${s}`));
    fc.assert(
      fc.property(header, fc.nat(), (h, size) => {
        const range = parseRange(h, size);
        if (range.kind === 'single') {
          assert.ok(range.start >= 0 && range.start <= range.end && range.end < size, JSON.stringify(range));
        }
      }),
    );
  });
});

describe('parseHttpDate', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const expected = Date.parse('1994-11-06T08:49:37Z');
  for (const value of ['Sun, 06 Nov 1994 08:49:37 GMT', 'Sunday, 06-Nov-94 08:49:37 GMT', 'Sun Nov  6 08:49:37 1994']) {
    test(`accepts ${value}`, () => assert.equal(parseHttpDate(value, now), expected));
  }
  test('a two-digit year is never more than 50 years ahead', () => {
    assert.equal(parseHttpDate('Monday, 01-Jan-75 00:00:00 GMT', now), Date.parse('2075-01-01T00:00:00Z'));
    assert.equal(parseHttpDate('Friday, 01-Jan-77 00:00:00 GMT', now), Date.parse('1977-01-01T00:00:00Z'));
  });
  for (const value of [
    '1',
    '2024',
    'yesterday',
    '2024-05-06T07:08:09Z',
    'Sun, 06 Nov 1994 08:49:37 UTC',
    'sun, 06 Nov 1994 08:49:37 GMT',
    'Sun, 6 Nov 1994 08:49:37 GMT',
    'Sun, 31 Feb 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 24:00:00 GMT',
    ' Sun, 06 Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT',
  ]) {
    test(`rejects ${JSON.stringify(value)}`, () => assert.equal(parseHttpDate(value, now), undefined));
  }
});

interface Fixture {
  dir: string;
  content: Buffer;
  sha256: string;
  filePath: string;
}

async function makeFixture(content: Buffer): Promise<Fixture> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'send-file-'));
  const filePath = path.join(dir, 'meeting_abc.zip');
  await fsp.writeFile(filePath, content);
  return { dir, content, filePath, sha256: createHash('sha256').update(content).digest('hex') };
}

/** What identifies the file behind an fd; a recycled fd number points at something else. */
function fdIdentity(fd: number): string {
  const stat = fs.fstatSync(fd);
  return `${stat.dev}:${stat.ino}`;
}

function assertFdReleased(opened: OpenedFd): void {
  let identity: string;
  try {
    identity = fdIdentity(opened.fd);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'EBADF');
    return;
  }
  assert.notEqual(identity, opened.identity, `fd ${opened.fd} still refers to the served file`);
}

interface OpenedFd {
  fd: number;
  identity: string;
}

interface Exchange {
  result: Promise<SendResult>;
  opened: OpenedFd;
  socket: net.Socket;
}

interface TestServer {
  port: number;
  exchanges: Exchange[];
  close(): Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => Exchange;

async function startServer(handler: Handler): Promise<TestServer> {
  const exchanges: Exchange[] = [];
  const server = http.createServer((req, res) => {
    exchanges.push(handler(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    exchanges,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function packageFor(fixture: Fixture, fd: number, overrides: Partial<PackageFile> = {}): PackageFile {
  return {
    fd,
    size: fixture.content.length,
    sha256: fixture.sha256,
    lastModified: LAST_MODIFIED,
    filename: 'meeting_abc.zip',
    ...overrides,
  };
}

/** Serves `fixture` from a freshly opened fd per request, as the real route will. */
function servingFixture(fixture: Fixture, opts: Partial<SendOptions> = {}, overrides: Partial<PackageFile> = {}): Handler {
  return (req, res) => {
    const fd = fs.openSync(fixture.filePath, 'r');
    const opened = { fd, identity: fdIdentity(fd) };
    const result = sendFile(req, res, packageFor(fixture, fd, overrides), { idleTimeoutMs: 10_000, ...opts });
    return { result, opened, socket: req.socket };
  };
}

interface ClientResponse {
  status: number | undefined;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** False when the connection ended before the announced body did. */
  complete: boolean;
  error: Error | undefined;
}

function request(port: number, options: { method?: string; headers?: Record<string, string> } = {}): Promise<ClientResponse> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const req = http.request({ host: '127.0.0.1', port, path: '/', agent: false, method: options.method ?? 'GET', headers: options.headers });
    req.on('error', (error) => resolve({ status: undefined, headers: {}, body: Buffer.concat(chunks), complete: false, error }));
    req.on('response', (res) => {
      let error: Error | undefined;
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => (error = err));
      res.on('close', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete, error }));
    });
    req.end();
  });
}

for (const mode of SEND_MODES) {
  describe(`sendFile (${mode.name})`, SUITE_TIMEOUT, () => {
    const size = 3 * 1024 * 1024 + 17;
    let fixture: Fixture;
    let server: TestServer;
    let bytesReported: number[];

    before(async () => {
      fixture = await makeFixture(randomBytes(size));
      bytesReported = [];
      server = await startServer(servingFixture(fixture, { ...mode.opts, chunkSize: 64 * 1024, onBytes: (n) => bytesReported.push(n) }));
    });
    after(async () => {
      await server.close();
      await fsp.rm(fixture.dir, { recursive: true, force: true });
    });

    async function exchange(options: { method?: string; headers?: Record<string, string> } = {}) {
      const before = server.exchanges.length;
      bytesReported.length = 0;
      const response = await request(server.port, options);
      const served = server.exchanges[before];
      assert.ok(served, 'the server saw the request');
      const result = await served.result;
      assertFdReleased(served.opened);
      return { response, result };
    }

    test('GET sends the whole file with the package headers', async () => {
      const { response, result } = await exchange();
      assert.equal(response.status, 200);
      assert.ok(response.body.equals(fixture.content));
      assert.equal(response.headers['content-type'], 'application/zip');
      assert.equal(response.headers['content-length'], String(size));
      assert.equal(response.headers['content-disposition'], 'attachment; filename="meeting_abc.zip"');
      assert.equal(response.headers.etag, `"${fixture.sha256}"`);
      assert.equal(response.headers['last-modified'], LAST_MODIFIED_HTTP);
      assert.equal(response.headers['accept-ranges'], 'bytes');
      assert.equal(response.headers['cache-control'], 'no-cache');
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.deepEqual(result, { status: 200, bytesSent: size, completed: true });
      assert.equal(
        bytesReported.reduce((a, b) => a + b, 0),
        size,
      );
      // A handed-off body is counted when sampled (body-handoff.test.ts), not per chunk.
      if (!mode.handOff) assert.ok(bytesReported.length > 1, 'streamed in chunks');
      if (mode.handOff) assert.equal(response.headers.connection, 'close');
    });

    test('HEAD has the headers of GET and no body, even with a Range', async () => {
      const headerSets: Array<Record<string, string>> = [{}, { Range: 'bytes=0-9' }];
      for (const headers of headerSets) {
        const { response, result } = await exchange({ method: 'HEAD', headers });
        assert.equal(response.status, 200);
        assert.equal(response.body.length, 0);
        assert.equal(response.headers['content-length'], String(size));
        assert.equal(response.headers.etag, `"${fixture.sha256}"`);
        assert.equal(response.headers['content-range'], undefined);
        assert.deepEqual(result, { status: 200, bytesSent: 0, completed: true });
      }
    });

    for (const [header, start, end] of [
      ['bytes=0-0', 0, 0],
      ['bytes=0-99', 0, 99],
      ['bytes=1000-', 1000, size - 1],
      ['bytes=-500', size - 500, size - 1],
      ['bytes=65530-200000', 65530, 200000],
      [`bytes=${size - 1}-${size + 1000}`, size - 1, size - 1],
    ] as const) {
      test(`Range ${header} -> 206 with exactly those bytes`, async () => {
        const { response, result } = await exchange({ headers: { Range: header } });
        assert.equal(response.status, 206);
        assert.equal(response.headers['content-range'], `bytes ${start}-${end}/${size}`);
        assert.equal(response.headers['content-length'], String(end - start + 1));
        assert.equal(response.headers['content-type'], 'application/zip');
        assert.ok(response.body.equals(fixture.content.subarray(start, end + 1)));
        assert.deepEqual(result, { status: 206, bytesSent: end - start + 1, completed: true });
      });
    }

    for (const header of [`bytes=${size}-`, 'bytes=-0']) {
      test(`Range ${header} -> 416 with the size`, async () => {
        const { response, result } = await exchange({ headers: { Range: header } });
        assert.equal(response.status, 416);
        assert.equal(response.headers['content-range'], `bytes */${size}`);
        assert.equal(response.body.length, 0);
        assert.equal(result.status, 416);
      });
    }

    for (const header of ['bytes=0-1,5-6', 'bytes=5-1', 'pages=1-2', 'bytes=0-99999999999999999999']) {
      test(`Range ${header} is ignored -> 200 full`, async () => {
        const { response } = await exchange({ headers: { Range: header } });
        assert.equal(response.status, 200);
        assert.equal(response.headers['content-range'], undefined);
        assert.ok(response.body.equals(fixture.content));
      });
    }

    test('If-None-Match matching (exact, list, *, weak) -> 304 without a body', async () => {
      const etag = `"${fixture.sha256}"`;
      for (const value of [etag, `"other", ${etag}`, `"a","b" ,${etag}`, '*', `W/${etag}`, ` W/"x" , W/${etag} `]) {
        for (const method of ['GET', 'HEAD']) {
          const { response, result } = await exchange({ method, headers: { 'If-None-Match': value, Range: 'bytes=0-1' } });
          assert.equal(response.status, 304, `${method} ${value}`);
          assert.equal(response.body.length, 0);
          assert.equal(response.headers.etag, etag);
          assert.equal(response.headers['last-modified'], LAST_MODIFIED_HTTP);
          assert.equal(response.headers['cache-control'], 'no-cache');
          assert.deepEqual(result, { status: 304, bytesSent: 0, completed: true });
        }
      }
    });

    test('If-None-Match not matching -> 200, and If-Modified-Since is then ignored', async () => {
      for (const value of ['"other"', `"${fixture.sha256.toUpperCase()}"`, `"${fixture.sha256}`, 'garbage']) {
        const { response } = await exchange({ headers: { 'If-None-Match': value, 'If-Modified-Since': LAST_MODIFIED_HTTP } });
        assert.equal(response.status, 200, value);
        assert.ok(response.body.equals(fixture.content));
      }
    });

    test('If-Modified-Since at or after Last-Modified -> 304', async () => {
      for (const value of [LAST_MODIFIED_HTTP, 'Monday, 06-May-24 07:08:09 GMT', 'Mon May  6 07:08:09 2024', 'Tue, 07 May 2024 00:00:00 GMT']) {
        const { response } = await exchange({ headers: { 'If-Modified-Since': value } });
        assert.equal(response.status, 304, value);
      }
    });

    test('If-Modified-Since earlier, unparseable or in the future -> 200', async () => {
      const future = new Date(Date.now() + 86_400_000).toUTCString();
      for (const value of ['Mon, 06 May 2024 07:08:08 GMT', '1', 'yesterday', '2030-01-01', future]) {
        const { response } = await exchange({ headers: { 'If-Modified-Since': value } });
        assert.equal(response.status, 200, value);
        assert.equal(response.body.length, size);
      }
    });

    test('If-Range with our strong ETag or exact Last-Modified honours the Range', async () => {
      for (const value of [`"${fixture.sha256}"`, LAST_MODIFIED_HTTP, 'Mon May  6 07:08:09 2024']) {
        const { response } = await exchange({ headers: { Range: 'bytes=10-19', 'If-Range': value } });
        assert.equal(response.status, 206, value);
        assert.ok(response.body.equals(fixture.content.subarray(10, 20)));
      }
    });

    test('If-Range with another ETag, a weak ETag or another date -> 200 full', async () => {
      for (const value of ['"other"', `W/"${fixture.sha256}"`, 'Mon, 06 May 2024 07:08:10 GMT', 'Mon, 06 May 2024 07:08:08 GMT', 'garbage']) {
        const { response } = await exchange({ headers: { Range: 'bytes=10-19', 'If-Range': value } });
        assert.equal(response.status, 200, value);
        assert.ok(response.body.equals(fixture.content));
      }
    });

    test('If-Match: a resume against a replaced package gets 412, against ours 206', async () => {
      const stale = await exchange({ headers: { Range: 'bytes=10-19', 'If-Match': '"previous-package"' } });
      assert.equal(stale.response.status, 412);
      assert.equal(stale.response.body.length, 0);
      const weak = await exchange({ headers: { 'If-Match': `W/"${fixture.sha256}"` } });
      assert.equal(weak.response.status, 412);
      const current = await exchange({ headers: { Range: 'bytes=10-19', 'If-Match': `"x", "${fixture.sha256}"` } });
      assert.equal(current.response.status, 206);
      assert.ok(current.response.body.equals(fixture.content.subarray(10, 20)));
    });

    test('If-Unmodified-Since before Last-Modified -> 412; at it -> 200', async () => {
      const earlier = await exchange({ headers: { 'If-Unmodified-Since': 'Mon, 06 May 2024 07:08:08 GMT' } });
      assert.equal(earlier.response.status, 412);
      const same = await exchange({ headers: { 'If-Unmodified-Since': LAST_MODIFIED_HTTP } });
      assert.equal(same.response.status, 200);
    });

    test('other methods -> 405 with Allow, fd closed', async () => {
      const { response, result } = await exchange({ method: 'POST' });
      assert.equal(response.status, 405);
      assert.equal(response.headers.allow, 'GET, HEAD');
      assert.equal(result.status, 405);
    });
  });

}

describe('sendFile edge cases', SUITE_TIMEOUT, () => {
  let fixture: Fixture;
  before(async () => {
    fixture = await makeFixture(randomBytes(1024));
  });
  after(async () => {
    await fsp.rm(fixture.dir, { recursive: true, force: true });
  });

  test('an empty file is served whole for any Range and does not crash', async () => {
    const empty = await makeFixture(Buffer.alloc(0));
    const server = await startServer(servingFixture(empty));
    try {
      for (const [method, headers] of [
        ['GET', {}],
        ['GET', { Range: 'bytes=0-' }],
        ['GET', { Range: 'bytes=-5' }],
        ['GET', { Range: 'bytes=0-0' }],
        ['HEAD', {}],
      ] as const) {
        const response = await request(server.port, { method, headers });
        assert.equal(response.status, 200, `${method} ${JSON.stringify(headers)}`);
        assert.equal(response.headers['content-length'], '0');
        assert.equal(response.body.length, 0);
        const served = server.exchanges.at(-1);
        assert.ok(served);
        assert.deepEqual(await served.result, { status: 200, bytesSent: 0, completed: true });
        // Checked before the next request can reopen the same file under the same fd number.
        assertFdReleased(served.opened);
      }
    } finally {
      await server.close();
      await fsp.rm(empty.dir, { recursive: true, force: true });
    }
  });

  test('a non-ASCII filename gets an ASCII fallback and an RFC 8187 filename*', async () => {
    const server = await startServer(servingFixture(fixture, {}, { filename: '会议 "1".zip' }));
    try {
      const response = await request(server.port);
      assert.equal(response.headers['content-disposition'], `attachment; filename="__ _1_.zip"; filename*=UTF-8''%E4%BC%9A%E8%AE%AE%20%221%22.zip`);
      await server.exchanges[0]?.result;
    } finally {
      await server.close();
    }
  });

  test('invalid arguments reject and still close the fd', async () => {
    const server = await startServer((req, res) => {
      const fd = fs.openSync(fixture.filePath, 'r');
      const opened = { fd, identity: fdIdentity(fd) };
      const result = sendFile(req, res, packageFor(fixture, fd, { sha256: 'not-a-hash' }), { idleTimeoutMs: 1000 });
      result.catch(() => res.writeHead(500).end());
      return { result, opened, socket: req.socket };
    });
    try {
      const response = await request(server.port);
      assert.equal(response.status, 500);
      const served = server.exchanges[0];
      assert.ok(served);
      await assert.rejects(served.result, TypeError);
      assertFdReleased(served.opened);
    } finally {
      await server.close();
    }
  });
});

for (const mode of SEND_MODES) {
  describe(`sendFile on a large file (${mode.name})`, SUITE_TIMEOUT, () => {
    const size = 32 * 1024 * 1024;
    let fixture: Fixture;
    before(async () => {
      fixture = await makeFixture(randomBytes(size));
    });
    after(async () => {
      await fsp.rm(fixture.dir, { recursive: true, force: true });
    });

    test('a client abort mid-body resolves with completed=false and closes the fd', async () => {
      const server = await startServer(servingFixture(fixture, mode.opts));
      try {
        await new Promise<void>((resolve) => {
          const req = http.get({ host: '127.0.0.1', port: server.port, agent: false }, (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          });
          req.on('error', () => {});
        });
        const served = server.exchanges[0];
        assert.ok(served);
        const result = await served.result;
        assert.equal(result.completed, false);
        assert.equal(result.abortReason, 'client-closed');
        assert.equal(result.error, undefined);
        assert.ok(result.bytesSent < size);
        assertFdReleased(served.opened);
      } finally {
        await server.close();
      }
    });

    test('a client that stops reading is cut off after idleTimeoutMs and the fd is closed', async () => {
      const server = await startServer(servingFixture(fixture, { ...mode.opts, idleTimeoutMs: 300 }));
      const client = net.connect(server.port, '127.0.0.1');
      client.on('error', () => {});
      try {
        client.write('GET / HTTP/1.1\r\nHost: tablet\r\n\r\n');
        // Never read: the kernel buffers fill and the server's writes stop completing.
        client.pause();
        while (server.exchanges.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        const served = server.exchanges[0];
        assert.ok(served);
        const result = await served.result;
        assert.equal(result.completed, false);
        assert.equal(result.abortReason, 'idle-timeout');
        assert.ok(result.bytesSent < size, `sent ${result.bytesSent}`);
        assert.equal(served.socket.destroyed, true);
        assertFdReleased(served.opened);
      } finally {
        client.destroy();
        await server.close();
      }
    });

    // These act from onBytes at the first chunk, which only the pump calls chunk by chunk; a handed-off
    // body reports bytes when sampled, so its versions (body-handoff.test.ts) act while a paused
    // client holds the transfer mid-body.
    if (!mode.handOff) {
      test('renaming a new package over the file or unlinking it mid-download still delivers the old bytes', async () => {
        for (const replace of ['rename', 'unlink'] as const) {
          const original = await makeFixture(randomBytes(4 * 1024 * 1024));
          let replaced = false;
          const server = await startServer(
            servingFixture(original, {
              ...mode.opts,
              chunkSize: 64 * 1024,
              onBytes: () => {
                if (replaced) return;
                replaced = true;
                if (replace === 'unlink') {
                  fs.unlinkSync(original.filePath);
                } else {
                  const next = `${original.filePath}.next`;
                  fs.writeFileSync(next, randomBytes(original.content.length));
                  fs.renameSync(next, original.filePath);
                }
              },
            }),
          );
          try {
            const response = await request(server.port);
            assert.equal(replaced, true);
            assert.equal(response.status, 200);
            assert.equal(response.complete, true);
            assert.ok(response.body.equals(original.content), `${replace}: old bytes delivered`);
            const served = server.exchanges[0];
            assert.ok(served);
            assert.equal((await served.result).completed, true);
            assertFdReleased(served.opened);
          } finally {
            await server.close();
            await fsp.rm(original.dir, { recursive: true, force: true });
          }
        }
      });

      test('a file truncated mid-download destroys the connection instead of ending short', async () => {
        const victim = await makeFixture(randomBytes(4 * 1024 * 1024));
        let truncated = false;
        const server = await startServer(
          servingFixture(victim, {
            ...mode.opts,
            chunkSize: 64 * 1024,
            onBytes: () => {
              if (truncated) return;
              truncated = true;
              fs.truncateSync(victim.filePath, 100_000);
            },
          }),
        );
        try {
          const response = await request(server.port);
          assert.equal(response.status, 200);
          assert.equal(response.complete, false);
          assert.ok(response.body.length < victim.content.length);
          const served = server.exchanges[0];
          assert.ok(served);
          const result = await served.result;
          assert.equal(result.completed, false);
          assert.equal(result.abortReason, 'server-error');
          assert.match(result.error?.message ?? '', /file ended after/);
          assertFdReleased(served.opened);
        } finally {
          await server.close();
          await fsp.rm(victim.dir, { recursive: true, force: true });
        }
      });

      test('a read error destroys the connection; the client never sees a clean response', async () => {
        const server = await startServer((req, res) => {
          // A directory fd opens fine and fails on the first read (EISDIR).
          const fd = fs.openSync(fixture.dir, 'r');
          const opened = { fd, identity: fdIdentity(fd) };
          const result = sendFile(req, res, packageFor(fixture, fd), { ...mode.opts, idleTimeoutMs: 10_000 });
          return { result, opened, socket: req.socket };
        });
        try {
          const response = await request(server.port);
          assert.equal(response.complete, false);
          assert.ok(response.error, 'the client sees a failed transfer');
          const served = server.exchanges[0];
          assert.ok(served);
          const result = await served.result;
          assert.equal(result.completed, false);
          assert.equal(result.abortReason, 'server-error');
          assert.equal((result.error as NodeJS.ErrnoException | undefined)?.code, 'EISDIR');
          assertFdReleased(served.opened);
        } finally {
          await server.close();
        }
      });

      test('an onBytes callback that throws fails the transfer instead of the process', async () => {
        const server = await startServer(
          servingFixture(fixture, {
            ...mode.opts,
            onBytes: () => {
              throw new Error('metrics broke');
            },
          }),
        );
        try {
          const response = await request(server.port);
          assert.equal(response.complete, false);
          const served = server.exchanges[0];
          assert.ok(served);
          const result = await served.result;
          assert.equal(result.abortReason, 'server-error');
          assert.equal(result.error?.message, 'metrics broke');
          assertFdReleased(served.opened);
        } finally {
          await server.close();
        }
      });
    }
  });

}

for (const mode of SEND_MODES) {
  describe(`sendFile property (${mode.name})`, SUITE_TIMEOUT, () => {
    test('for any size and Range header the response is what parseRange says', async () => {
      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'send-file-prop-'));
      const filePath = path.join(dir, 'p.zip');
      let current = { content: Buffer.alloc(0), sha256: '' };
      let seenRange: string | undefined;
      const server = await startServer((req, res) => {
        seenRange = req.headers.range;
        const fd = fs.openSync(filePath, 'r');
        const opened = { fd, identity: fdIdentity(fd) };
        const file: PackageFile = { fd, size: current.content.length, sha256: current.sha256, lastModified: LAST_MODIFIED, filename: 'p.zip' };
        return { result: sendFile(req, res, file, { ...mode.opts, idleTimeoutMs: 10_000, chunkSize: 1000 }), opened, socket: req.socket };
      });

      const position = fc.oneof(fc.nat(6000), fc.constant(0), fc.bigInt(2n ** 53n - 2n, 2n ** 70n).map(String));
      const spec = fc.oneof(
        fc.tuple(position, position).map(([a, b]) => `${a}-${b}`),
        position.map((a) => `${a}-`),
        position.map((n) => `-${n}`),
      );
      const rangeHeader = fc.oneof(
        spec.map((s) => `bytes=${s}`),
        fc.array(spec, { minLength: 2, maxLength: 3 }).map((specs) => `bytes=${specs.join(', ')}`),
        fc.string({ unit: fc.constantFrom(...'bytes=0123456789-, \t'), maxLength: 20 }),
        fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 20 }),
      );

      try {
        await fc.assert(
          fc.asyncProperty(fc.uint8Array({ maxLength: 5000 }), rangeHeader, async (bytes, header) => {
            const content = Buffer.from(bytes);
            current = { content, sha256: createHash('sha256').update(content).digest('hex') };
            await fsp.writeFile(filePath, content);
            const before = server.exchanges.length;
            const response = await request(server.port, { headers: { Range: header } });
            const served = server.exchanges[before];
            assert.ok(served);
            await served.result;
            assertFdReleased(served.opened);

            const range = parseRange(seenRange, content.length);
            if (range.kind === 'single') {
              assert.equal(response.status, 206);
              assert.equal(response.headers['content-range'], `bytes ${range.start}-${range.end}/${content.length}`);
              assert.ok(response.body.equals(content.subarray(range.start, range.end + 1)));
            } else if (range.kind === 'unsatisfiable' && content.length > 0) {
              assert.equal(response.status, 416);
              assert.equal(response.headers['content-range'], `bytes */${content.length}`);
              assert.equal(response.body.length, 0);
            } else {
              assert.equal(response.status, 200);
              assert.ok(response.body.equals(content));
            }
          }),
          { numRuns: 150 },
        );
      } finally {
        await server.close();
        await fsp.rm(dir, { recursive: true, force: true });
      }
    });
  });

}
