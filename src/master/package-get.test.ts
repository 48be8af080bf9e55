import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import { packageGet, type PackageGetOptions } from './package-get.ts';

/** A server that answers each connection by calling `answer` with the socket and the request head. */
async function rawServer(t: { after: (fn: () => Promise<void>) => void }, answer: (socket: net.Socket, request: string) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (data) => {
      if (head.includes('\r\n\r\n')) return;
      head += data.toString('latin1');
      if (head.includes('\r\n\r\n')) answer(socket, head);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as net.AddressInfo).port;
}

function options(port: number, extra: Partial<PackageGetOptions> = {}): PackageGetOptions {
  return { host: '127.0.0.1', port, path: '/p?x=1', signal: new AbortController().signal, connectTimeoutMs: 2_000, headersTimeoutMs: 2_000, ...extra };
}

async function readAll(body: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `data` as chunked encoding, in pieces of `size` bytes, with an extension and a trailer. */
function chunkedBody(data: Buffer, size: number): Buffer {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += size) {
    const piece = data.subarray(offset, offset + size);
    parts.push(Buffer.from(`${piece.length.toString(16)};ext=1\r\n`), piece, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\nX-Trailer: yes\r\n\r\n'));
  return Buffer.concat(parts);
}

/** Writes `bytes` in small slices with pauses, so framing lands across reads. */
async function dribble(socket: net.Socket, bytes: Buffer, slice: number): Promise<void> {
  for (let offset = 0; offset < bytes.length; offset += slice) {
    socket.write(bytes.subarray(offset, offset + slice));
    if ((offset / slice) % 7 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

test('chunked body (as the master sends it), framing split across reads: exact payload, request as expected', async (t) => {
  const data = randomBytes(600_000);
  let request = '';
  const port = await rawServer(t, (socket, head) => {
    request = head;
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n');
    void dribble(socket, chunkedBody(data, 50_000), 4_099).then(() => socket.end());
  });
  const response = await packageGet(options(port, { headers: { accept: 'application/zip' } }));
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers['content-type'], 'application/zip');
  assert.equal(response.headers['x-a'], '1, 2');
  assert.ok((await readAll(response.body)).equals(data));
  assert.match(request, /^GET \/p\?x=1 HTTP\/1\.1\r\n/);
  assert.match(request, new RegExp(`\\r\\nHost: 127\\.0\\.0\\.1:${port}\\r\\n`));
  assert.match(request, /\r\nConnection: close\r\n/);
  assert.match(request, /\r\naccept: application\/zip\r\n/);
});

test('Content-Length and close-delimited bodies', async (t) => {
  const data = randomBytes(300_000);
  const withLength = await rawServer(t, (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\n\r\n`);
    socket.end(data);
  });
  assert.ok((await readAll((await packageGet(options(withLength))).body)).equals(data));
  const untilClose = await rawServer(t, (socket) => {
    socket.write('HTTP/1.0 200 OK\r\n\r\n');
    socket.end(data);
  });
  assert.ok((await readAll((await packageGet(options(untilClose))).body)).equals(data));
});

test('a body cut before its end is an error, never a short success', async (t) => {
  const data = randomBytes(200_000);
  const chunkedCut = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
    // Every chunk, but not the terminating one.
    const body = chunkedBody(data, 10_000);
    socket.end(body.subarray(0, body.length - '0\r\nX-Trailer: yes\r\n\r\n'.length));
  });
  await assert.rejects(readAll((await packageGet(options(chunkedCut))).body), { code: 'TRUNCATED' });
  const lengthCut = await rawServer(t, (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\n\r\n`);
    socket.end(data.subarray(0, 1000));
  });
  await assert.rejects(readAll((await packageGet(options(lengthCut))).body), { code: 'TRUNCATED' });
  const reset = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
    socket.write(chunkedBody(data, 10_000).subarray(0, 50_000), () => socket.resetAndDestroy());
  });
  await assert.rejects(readAll((await packageGet(options(reset))).body), (error: NodeJS.ErrnoException) => ['ECONNRESET', 'TRUNCATED'].includes(error.code ?? ''));
});

test('malformed answers are errors naming what is wrong', async (t) => {
  const badSize = await rawServer(t, (socket) => socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'));
  await assert.rejects(readAll((await packageGet(options(badSize))).body), { code: 'BAD_CHUNK' });
  const notHttp = await rawServer(t, (socket) => socket.end('SSH-2.0-OpenSSH\r\n\r\n'));
  await assert.rejects(packageGet(options(notHttp)), { code: 'BAD_RESPONSE' });
  const gzip = await rawServer(t, (socket) => socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'));
  await assert.rejects(packageGet(options(gzip)), { code: 'BAD_RESPONSE' });
  const hugeHead = await rawServer(t, (socket) => socket.end(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
  await assert.rejects(packageGet(options(hugeHead)), { code: 'HEADERS_TOO_LARGE' });
  const headOnly = await rawServer(t, (socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Le'));
  await assert.rejects(packageGet(options(headOnly)), { code: 'ECONNRESET' });
});

test('an error status keeps its body readable (the master explains its 404s)', async (t) => {
  const port = await rawServer(t, (socket) => {
    const text = JSON.stringify({ detail: '会议 x 不存在' });
    socket.end(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  });
  const response = await packageGet(options(port));
  assert.equal(response.statusCode, 404);
  assert.equal(JSON.parse((await readAll(response.body)).toString('utf8')).detail, '会议 x 不存在');
});

test('headers timeout, abort before and during the body, connection refused', async (t) => {
  const silent = await rawServer(t, () => {});
  await assert.rejects(packageGet(options(silent, { headersTimeoutMs: 100 })), { code: 'HEADERS_TIMEOUT' });

  const endless = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
  });
  const controller = new AbortController();
  const response = await packageGet(options(endless, { signal: controller.signal }));
  const reading = readAll(response.body);
  setTimeout(() => controller.abort(new Error('stop now')), 50);
  await assert.rejects(reading, /stop now/);

  const aborted = new AbortController();
  aborted.abort(new Error('never started'));
  await assert.rejects(packageGet(options(endless, { signal: aborted.signal })), /never started/);

  // A port nobody listens on (the server's, once closed).
  const closed = net.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const unused = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await assert.rejects(packageGet(options(unused)), { code: 'ECONNREFUSED' });
});

test('a slow consumer pauses the socket: buffered bytes stay bounded, every byte arrives', async (t) => {
  const data = randomBytes(8 * 1024 * 1024);
  const port = await rawServer(t, (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\n\r\n`);
    socket.end(data);
  });
  const response = await packageGet(options(port));
  const chunks: Buffer[] = [];
  let maxBuffered = 0;
  for await (const chunk of response.body) {
    chunks.push(chunk as Buffer);
    maxBuffered = Math.max(maxBuffered, response.body.readableLength);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.ok(Buffer.concat(chunks).equals(data));
  assert.ok(maxBuffered <= 2 * 1024 * 1024, `at most about the high-water mark buffered (${maxBuffered})`);
});

test('a chunked body\'s trailer fields are read once the body has ended', async (t) => {
  const data = randomBytes(100_000);
  const port = await rawServer(t, (socket) => {
    socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n');
    void dribble(socket, chunkedBody(data, 30_000), 997).then(() => socket.end());
  });
  const response = await packageGet(options(port));
  assert.ok((await readAll(response.body)).equals(data));
  assert.deepEqual(response.trailers, { 'x-trailer': 'yes' });
});
