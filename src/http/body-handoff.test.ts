import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BodyHandOff, loadBodyHandOff, type TransferAddon } from './body-handoff.ts';
import { loadNetAddon } from './net-addon.ts';
import type { SendResult } from './response-outcome.ts';
import { sendFile, type SendOptions } from './send-file.ts';
import { isOpen, waitClosed } from '../../test/fds.ts';

// The addon's event-loop transfers seen through their wrapper and sendFile. Nothing here asserts on
// durations; the suite timeout only turns a hang (a transfer never reported) into a failure.
const SUITE_TIMEOUT = { timeout: 60_000 };
const ADDON = loadNetAddon().addon as (TransferAddon & object) | null;
const LAST_MODIFIED = new Date('2024-05-06T07:08:09.000Z');
/** More than loopback's socket buffers hold, so a client that stops reading stops the transfer mid-body. */
const SIZE = 24 * 1024 * 1024;

interface Served {
  /** What sendFile resolved with at once (the hand-off), then the final result. */
  first: Promise<SendResult>;
  final: Promise<SendResult>;
  fd: number;
  socket: net.Socket;
}

interface Fixture {
  dir: string;
  filePath: string;
  content: Buffer;
  sha256: string;
}

async function makeFixture(content: Buffer): Promise<Fixture> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'body-handoff-'));
  const filePath = path.join(dir, 'meeting_abc.zip');
  await fsp.writeFile(filePath, content);
  return { dir, filePath, content, sha256: createHash('sha256').update(content).digest('hex') };
}

async function startServer(fixture: Fixture, opts: Partial<SendOptions>): Promise<{ port: number; served: Served[]; server: http.Server; close(): Promise<void> }> {
  const served: Served[] = [];
  const server = http.createServer((req, res) => {
    const fd = fs.openSync(fixture.filePath, 'r');
    const first = sendFile(req, res, { fd, size: fixture.content.length, sha256: fixture.sha256, lastModified: LAST_MODIFIED, filename: 'meeting_abc.zip' }, { idleTimeoutMs: 10_000, ...opts });
    const final = first.then((result) => ('handedOff' in result ? result.handedOff : result));
    served.push({ first, final, fd, socket: req.socket });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    served,
    server,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A raw client: the request sent, its bytes gathered; `body()` is what followed the headers. */
function rawClient(port: number, headers = ''): { socket: net.Socket; received: () => Buffer; ended: Promise<void>; head: () => string; body: () => Buffer } {
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.write(`GET / HTTP/1.1\r\nHost: tablet\r\n${headers}\r\n`);
  const received = () => Buffer.concat(chunks);
  const split = () => {
    const all = received();
    const at = all.indexOf('\r\n\r\n');
    return at < 0 ? { head: all.toString('latin1'), body: Buffer.alloc(0) } : { head: all.subarray(0, at).toString('latin1'), body: all.subarray(at + 4) };
  };
  return { socket, received, ended, head: () => split().head, body: () => split().body };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** This process's descriptors once they are `wanted` or fewer, or after 2 s (closes are asynchronous). */
async function fdsSettled(wanted: number): Promise<number> {
  for (let i = 0; i < 400 && openFds() > wanted; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  return openFds();
}

describe('BodyHandOff (the addon absent or switched off)', () => {
  test('switched off or without the addon there is none, and sendFile pumps every body', () => {
    assert.equal(loadBodyHandOff({ enabled: false }).handOff, null);
    assert.equal(loadBodyHandOff({}, { addon: null, reason: 'not built' }).reason, 'not built');
    const older = loadBodyHandOff({}, { addon: { sendfile: () => 0, accept: () => 0 }, reason: 'edge-net.node' });
    assert.equal(older.handOff, null);
    assert.match(older.reason, /older build/);
  });

  test('without a hand-off a large body keeps the connection alive and is sent by the pump', async () => {
    const fixture = await makeFixture(randomBytes(2 * 1024 * 1024));
    const server = await startServer(fixture, { handOff: null });
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/`);
      assert.equal(response.headers.get('connection'), 'keep-alive');
      assert.ok(Buffer.from(await response.arrayBuffer()).equals(fixture.content));
      const [served] = server.served;
      assert.ok(served);
      assert.equal('handedOff' in (await served.first), false);
    } finally {
      await server.close();
      await fsp.rm(fixture.dir, { recursive: true, force: true });
    }
  });
  test('requests pipelined on one connection are answered in turn, each body whole', async () => {
    const fixture = await makeFixture(randomBytes(2 * 1024 * 1024));
    const server = await startServer(fixture, { handOff: null });
    try {
      const client = rawClient(server.port, '\r\nGET / HTTP/1.1\r\nHost: tablet\r\nConnection: close\r\n');
      await client.ended;
      const results = await Promise.all(server.served.map((served) => served.final));
      assert.deepEqual(
        results.map((result) => [result.status, result.completed]),
        [
          [200, true],
          [200, true],
        ],
      );
      const second = client.body().subarray(fixture.content.length);
      assert.ok(client.body().subarray(0, fixture.content.length).equals(fixture.content));
      assert.ok(second.subarray(second.indexOf('\r\n\r\n') + 4).equals(fixture.content));
    } finally {
      await server.close();
      await fsp.rm(fixture.dir, { recursive: true, force: true });
    }
  });
});

describe('BodyHandOff (the addon built)', { ...SUITE_TIMEOUT, skip: ADDON ? false : 'edge-net addon not built' }, () => {
  let fixture: Fixture;
  before(async () => {
    fixture = await makeFixture(randomBytes(SIZE));
  });
  after(async () => {
    await fsp.rm(fixture.dir, { recursive: true, force: true });
  });

  function handOff(options: { minBytes?: number; sampleEveryMs?: number } = {}): BodyHandOff {
    return new BodyHandOff(ADDON!, { minBytes: 1, ...options });
  }

  test('a transfer the addon refuses (-errno) is pumped instead; one that throws is a server error, the fd given back', async () => {
    const refusing = new BodyHandOff({ startTransfer: () => -22, transferProgress: () => new Float64Array(0), abortTransfer: () => false }, { minBytes: 1 });
    const refused = await startServer(fixture, { handOff: refusing });
    try {
      const response = await fetch(`http://127.0.0.1:${refused.port}/`, { headers: { Range: 'bytes=5-2000000' } });
      assert.equal(response.status, 206);
      assert.ok(Buffer.from(await response.arrayBuffer()).equals(fixture.content.subarray(5, 2_000_001)));
      const result = await refused.served[0]!.final;
      assert.deepEqual(result, { status: 206, bytesSent: 2_000_000 - 4, completed: true });
    } finally {
      await refused.close();
    }
    const broken = new BodyHandOff(
      {
        startTransfer: () => {
          throw new TypeError('addon broke');
        },
        transferProgress: () => new Float64Array(0),
        abortTransfer: () => false,
      },
      { minBytes: 1 },
    );
    const failing = await startServer(fixture, { handOff: broken });
    try {
      const client = rawClient(failing.port);
      await client.ended;
      assert.match(client.head(), /^HTTP\/1\.1 200 /);
      assert.equal(client.body().length, 0, 'the headers, then the connection cut');
      const result = await failing.served[0]!.final;
      assert.equal(result.abortReason, 'server-error');
      assert.equal(result.error?.message, 'addon broke');
      assert.ok(await waitClosed(failing.served[0]!.fd));
    } finally {
      await failing.close();
    }
  });

  test('a body below minBytes stays on the pump and the connection alive', async () => {
    const server = await startServer(fixture, { handOff: handOff({ minBytes: 1024 }) });
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/`, { headers: { Range: 'bytes=10-1000' } });
      assert.equal(response.status, 206);
      assert.equal(response.headers.get('connection'), 'keep-alive');
      assert.ok(Buffer.from(await response.arrayBuffer()).equals(fixture.content.subarray(10, 1001)));
      assert.equal('handedOff' in (await server.served[0]!.first), false);
    } finally {
      await server.close();
    }
  });

  test('many slow readers get every byte; the server holds none of their connections meanwhile', async () => {
    const bodies = 40;
    const wanted = 2 * 1024 * 1024;
    let reported = 0;
    const transfers = handOff({ sampleEveryMs: 20 });
    const server = await startServer(fixture, { handOff: transfers, onBytes: (n) => (reported += n) });
    try {
      const clients = Array.from({ length: bodies }, (_, i) => rawClient(server.port, `Range: bytes=${i * 1000}-${i * 1000 + wanted - 1}\r\n`));
      // Read slowly: each client takes what arrived, then pauses a while.
      const pacing = setInterval(() => {
        for (const client of clients) client.socket.isPaused() ? client.socket.resume() : client.socket.pause();
      }, 20);
      await until(() => server.served.length === bodies);
      const firsts = await Promise.all(server.served.map((served) => served.first));
      assert.ok(firsts.every((result) => 'handedOff' in result && result.status === 206));
      // Every request's socket is closed on the server's side: the addon holds the connections.
      assert.ok(server.served.every((served) => served.socket.destroyed));
      assert.equal(await new Promise<number>((resolve, reject) => server.server.getConnections((error, count) => (error ? reject(error) : resolve(count)))), 0);
      const results = await Promise.all(server.served.map((served) => served.final));
      clearInterval(pacing);
      for (const client of clients) client.socket.resume();
      await Promise.all(clients.map((client) => client.ended));
      clients.forEach((client, i) => {
        assert.match(client.head(), /^HTTP\/1\.1 206 /);
        assert.match(client.head(), /\r\nConnection: close/i);
        assert.ok(client.body().equals(fixture.content.subarray(i * 1000, i * 1000 + wanted)), `client ${i}: exact bytes`);
      });
      assert.ok(results.every((result) => result.completed && result.bytesSent === wanted));
      assert.equal(reported, bodies * wanted, 'every byte counted once');
      assert.equal(transfers.active, 0);
    } finally {
      await server.close();
    }
  });

  test('bytes sent are reported while a transfer runs, not only at its end', async () => {
    let reported = 0;
    const transfers = handOff({ sampleEveryMs: 10 });
    const server = await startServer(fixture, { handOff: transfers, onBytes: (n) => (reported += n) });
    try {
      const client = rawClient(server.port);
      await until(() => client.body().length > 0);
      // Paused: the transfer stops once loopback's buffers are full, short of the body's end.
      client.socket.pause();
      await until(() => reported > 0);
      assert.equal(transfers.active, 1);
      assert.ok(reported < SIZE);
      client.socket.resume();
      assert.equal((await server.served[0]!.final).completed, true);
      assert.equal(reported, SIZE);
      await client.ended;
    } finally {
      await server.close();
    }
  });

  test('input the client sent after its request does not cost it the body\'s tail (lingering close, not RST)', async () => {
    const server = await startServer(fixture, { handOff: handOff() });
    try {
      const client = rawClient(server.port);
      await until(() => client.body().length > 0);
      // Never read by anyone: closing with it unread would reset the connection, and the kernel
      // would drop the body's tail still queued for the client.
      client.socket.write('x'.repeat(1000));
      // Paused near the end, so that tail is still queued when the body is complete. (Without the
      // lingering close this client got 23.4 of 25.2 MB in the same steps, one run.)
      await until(() => client.body().length > SIZE - 3 * 1024 * 1024);
      client.socket.pause();
      await Promise.race([server.served[0]!.final, new Promise((resolve) => setTimeout(resolve, 500))]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      client.socket.resume();
      assert.equal((await server.served[0]!.final).completed, true);
      await client.ended;
      assert.ok(client.body().equals(fixture.content));
    } finally {
      await server.close();
    }
  });

  test('an onBytes that throws on a body\'s last bytes fails its result but does not cut its lingering close', async () => {
    // Aborting a transfer that already reported its end would close a lingering connection with
    // its input unread: a reset, which can cost the client the tail still queued for it.
    const aborted: number[] = [];
    const addon: TransferAddon = { ...ADDON!, abortTransfer: (id) => (aborted.push(id), ADDON!.abortTransfer(id)) };
    // No sampling while it runs: onBytes is called once, when the body is complete.
    const server = await startServer(fixture, {
      handOff: new BodyHandOff(addon, { minBytes: 1, sampleEveryMs: 60_000 }),
      onBytes: () => {
        throw new Error('metrics broke');
      },
    });
    try {
      const client = rawClient(server.port);
      await until(() => client.body().length > 0);
      client.socket.write('x'.repeat(1000));
      await until(() => client.body().length > SIZE - 3 * 1024 * 1024);
      client.socket.pause();
      await Promise.race([server.served[0]!.final, new Promise((resolve) => setTimeout(resolve, 500))]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      client.socket.resume();
      const result = await server.served[0]!.final;
      assert.deepEqual([result.abortReason, result.error?.message], ['server-error', 'metrics broke']);
      assert.deepEqual(aborted, [], 'the finished transfer is not aborted');
      await client.ended;
      assert.ok(client.body().equals(fixture.content), `the client got ${client.body().length} of ${SIZE} bytes`);
    } finally {
      await server.close();
    }
  });

  test('a request pipelined behind a handed-off body ends as client-closed with the connection, its descriptor given back', async () => {
    const server = await startServer(fixture, { handOff: handOff() });
    try {
      // Both requests in one write: Node has parsed the second (and queued its response) by the
      // time the first's body is handed off and the connection leaves it.
      const client = rawClient(server.port, '\r\nGET / HTTP/1.1\r\nHost: tablet\r\n');
      await client.ended;
      assert.ok(client.body().equals(fixture.content), 'the first body whole, then the close it announced');
      await until(() => server.served.length === 2);
      const [first, second] = await Promise.all(server.served.map((served) => served.final));
      assert.equal(first?.completed, true);
      assert.deepEqual([second?.completed, second?.abortReason], [false, 'client-closed']);
      assert.ok(await waitClosed(server.served[1]!.fd), 'the queued response gave its descriptor back');
    } finally {
      await server.close();
    }
  });

  test('a client abort mid-body ends the transfer as client-closed and releases its descriptors', async () => {
    const fdsBefore = openFds();
    const server = await startServer(fixture, { handOff: handOff() });
    try {
      const client = rawClient(server.port);
      await until(() => client.body().length > 0);
      client.socket.pause();
      await until(() => server.served.length === 1);
      const served = server.served[0]!;
      assert.ok('handedOff' in (await served.first));
      client.socket.destroy();
      const result = await served.final;
      assert.equal(result.completed, false);
      assert.equal(result.abortReason, 'client-closed');
      assert.ok(result.bytesSent > 0 && result.bytesSent < SIZE, `sent ${result.bytesSent}`);
      assert.ok(await waitClosed(served.fd), 'the package descriptor is given back');
      assert.ok((await fdsSettled(fdsBefore + 1)) <= fdsBefore + 1, 'the connection is closed (the listener stays)');
    } finally {
      await server.close();
    }
    assert.ok((await fdsSettled(fdsBefore)) <= fdsBefore);
  });

  test('after 1,000 clients that close mid-body this process holds the descriptors it held before', async () => {
    const transfers = handOff();
    const server = await startServer(fixture, { handOff: transfers });
    const fdsBefore = openFds();
    try {
      for (let batch = 0; batch < 10; batch++) {
        const clients = Array.from({ length: 100 }, () => {
          const socket = net.connect(server.port, '127.0.0.1');
          socket.on('error', () => {});
          // Closed as soon as the body starts: its transfer is cut anywhere from its first byte on.
          socket.once('data', () => socket.destroy());
          socket.write('GET / HTTP/1.1\r\nHost: tablet\r\n\r\n');
          return new Promise((resolve) => socket.on('close', resolve));
        });
        await Promise.all(clients);
      }
      await until(() => server.served.length === 1000);
      const results = await Promise.all(server.served.map((served) => served.final));
      assert.equal(results.filter((result) => result.completed).length, 0);
      assert.equal(transfers.active, 0);
      assert.ok((await fdsSettled(fdsBefore)) <= fdsBefore, `${openFds()} descriptors open, ${fdsBefore} before`);
    } finally {
      await server.close();
    }
  });

  test('a client that stops reading is closed after the idle timeout, its descriptors released', async () => {
    const fdsBefore = openFds();
    const server = await startServer(fixture, { handOff: handOff(), idleTimeoutMs: 200 });
    const client = rawClient(server.port);
    try {
      await until(() => client.body().length > 0);
      client.socket.pause();
      await until(() => server.served.length === 1);
      const served = server.served[0]!;
      const result = await served.final;
      assert.equal(result.abortReason, 'idle-timeout');
      assert.ok(result.bytesSent < SIZE);
      assert.ok(await waitClosed(served.fd));
      client.socket.resume();
      await client.ended;
      assert.ok(client.body().length < SIZE, 'the client sees a cut body');
    } finally {
      client.socket.destroy();
      await server.close();
    }
    assert.ok((await fdsSettled(fdsBefore)) <= fdsBefore);
  });

  test('a package renamed over or unlinked mid-body: the old bytes are delivered', async () => {
    for (const replace of ['rename', 'unlink'] as const) {
      const original = await makeFixture(randomBytes(SIZE));
      const server = await startServer(original, { handOff: handOff() });
      try {
        const client = rawClient(server.port);
        await until(() => client.body().length > 0);
        client.socket.pause();
        await until(() => server.served.length === 1);
        assert.ok('handedOff' in (await server.served[0]!.first));
        if (replace === 'unlink') fs.unlinkSync(original.filePath);
        else {
          fs.writeFileSync(`${original.filePath}.next`, randomBytes(SIZE));
          fs.renameSync(`${original.filePath}.next`, original.filePath);
        }
        client.socket.resume();
        await client.ended;
        assert.ok(client.body().equals(original.content), `${replace}: old bytes delivered`);
        assert.equal((await server.served[0]!.final).completed, true);
      } finally {
        await server.close();
        await fsp.rm(original.dir, { recursive: true, force: true });
      }
    }
  });

  test('a file truncated mid-body is a server error and the client never sees a whole body', async () => {
    const victim = await makeFixture(randomBytes(SIZE));
    const server = await startServer(victim, { handOff: handOff() });
    try {
      const client = rawClient(server.port);
      await until(() => client.body().length > 0);
      client.socket.pause();
      await until(() => server.served.length === 1);
      assert.ok('handedOff' in (await server.served[0]!.first));
      fs.truncateSync(victim.filePath, 100_000);
      client.socket.resume();
      const result = await server.served[0]!.final;
      await client.ended;
      assert.equal(result.abortReason, 'server-error');
      assert.match(result.error?.message ?? '', /^file ended after \d+ of \d+ bytes$/);
      assert.ok(client.body().length < SIZE);
    } finally {
      await server.close();
      await fsp.rm(victim.dir, { recursive: true, force: true });
    }
  });

  test('an onBytes that throws fails that transfer (server-error) and nothing else', async () => {
    const transfers = handOff({ sampleEveryMs: 5 });
    const server = await startServer(fixture, {
      handOff: transfers,
      onBytes: () => {
        throw new Error('metrics broke');
      },
    });
    try {
      const client = rawClient(server.port);
      await until(() => client.body().length > 0);
      client.socket.pause();
      await until(() => server.served.length === 1);
      const result = await server.served[0]!.final;
      assert.equal(result.abortReason, 'server-error');
      assert.equal(result.error?.message, 'metrics broke');
      client.socket.resume();
      await client.ended;
      assert.ok(client.body().length < SIZE);
      assert.equal(transfers.active, 0);
    } finally {
      await server.close();
    }
  });

  test('abortAll (a stop that waits no longer) ends running transfers as client-closed; idle() then resolves', async () => {
    const transfers = handOff();
    const server = await startServer(fixture, { handOff: transfers });
    const clients = [rawClient(server.port), rawClient(server.port)];
    try {
      for (const client of clients) {
        await until(() => client.body().length > 0);
        client.socket.pause();
      }
      await until(() => server.served.length === 2);
      await Promise.all(server.served.map((served) => served.first));
      assert.equal(transfers.active, 2);
      let idle = false;
      const waiting = transfers.idle().then(() => (idle = true));
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(idle, false, 'idle() waits for running transfers');
      transfers.abortAll();
      await waiting;
      const results = await Promise.all(server.served.map((served) => served.final));
      assert.deepEqual(
        results.map((result) => result.abortReason),
        ['client-closed', 'client-closed'],
      );
      for (const served of server.served) assert.equal(isOpen(served.fd) && fs.fstatSync(served.fd).ino === fs.statSync(fixture.filePath).ino, false);
      for (const client of clients) {
        client.socket.resume();
        await client.ended;
      }
    } finally {
      await server.close();
    }
  });
});
