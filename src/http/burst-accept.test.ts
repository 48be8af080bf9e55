import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { readEnvironment } from '../config/cli-options.ts';
import { BurstAccept, loadAcceptor, type Acceptor } from './burst-accept.ts';
import { loadNetAddon } from './net-addon.ts';

const ADDON = loadNetAddon().addon;

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** Opens `count` connections and waits until the kernel completed every handshake. */
async function connectAll(port: number, count: number): Promise<net.Socket[]> {
  return Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
          socket.once('error', reject);
        }),
    ),
  );
}

/** Sends one GET on `socket` and resolves the whole raw answer (the server closes after it). */
function ask(socket: net.Socket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.once('error', reject);
    socket.end(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
}

test('loads with the addon; EDGE_BURST_ACCEPT=0 turns it off', () => {
  const loaded = loadAcceptor({});
  assert.ok(loaded.acceptor, `not loaded: ${loaded.reason}`);
  assert.equal(loadAcceptor({ enabled: readEnvironment({ EDGE_BURST_ACCEPT: '0' }).burstAccept }).acceptor, null);
});

/** Counts turns of the event loop (one check phase each) until stopped. */
function turnCounter(): { now(): number; stop(): void } {
  let turn = 0;
  let immediate = setImmediate(function tick() {
    turn += 1;
    immediate = setImmediate(tick);
  });
  return { now: () => turn, stop: () => clearImmediate(immediate) };
}

/**
 * Connects `count` clients while this process's event loop is held, so that all of them wait in
 * the kernel's accept queue at once, as a herd of tablets at a meeting's start does.
 */
async function burstOf(port: number, count: number): Promise<net.Socket[]> {
  const sockets = Array.from({ length: count }, () => net.connect(port, '127.0.0.1'));
  await new Promise<void>((resolve) =>
    setImmediate(() => {
      // The connect() calls ran (next ticks); loopback handshakes complete in the kernel without
      // the server. Hold the loop so that none is accepted before all are queued.
      const until = performance.now() + 50;
      while (performance.now() < until);
      resolve();
    }),
  );
  return sockets;
}

async function serveBurst(acceptor: Acceptor | null, count: number) {
  const turns = turnCounter();
  const server = http.createServer((req, res) => {
    res.setHeader('connection', 'close');
    res.end(`hello ${req.url} from ${req.socket.remoteAddress}`);
  });
  const burst = acceptor ? new BurstAccept(server, acceptor) : null;
  const connectionTurns = new Set<number>();
  server.on('connection', () => connectionTurns.add(turns.now()));
  const port = await listen(server);
  try {
    const sockets = await burstOf(port, count);
    const answers = await Promise.all(sockets.map((socket, i) => ask(socket, `/t${i}`)));
    for (const [i, answer] of answers.entries()) {
      assert.match(answer, /^HTTP\/1\.1 200 OK/);
      assert.ok(answer.endsWith(`hello /t${i} from 127.0.0.1`), answer);
    }
    return { turns: connectionTurns.size, accepted: burst?.accepted ?? 0, burst };
  } finally {
    turns.stop();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

test('a burst of connections is accepted in one turn of the event loop; each is served like any other', { skip: ADDON ? false : 'edge-net addon not built' }, async () => {
  const count = 100;
  const drained = await serveBurst(ADDON, count);
  assert.equal(drained.turns, 1, 'every connection in the turn of the first');
  assert.equal(drained.accepted, count - 1, 'Node accepted the first, the drain the rest');
  await drained.burst?.closed();
  assert.equal(drained.burst?.openCount, 0);

  // Without it, libuv takes one per turn (what this module exists for).
  const plain = await serveBurst(null, count);
  assert.ok(plain.turns > count / 2, `one per turn without the drain (${plain.turns} turns)`);
});

test('closed() waits for the connections it accepted (server.close() does not)', { skip: ADDON ? false : 'edge-net addon not built' }, async () => {
  const server = http.createServer((_req, res) => {
    res.writeHead(200);
    res.write('first part');
  });
  const burst = new BurstAccept(server, ADDON as Acceptor);
  const port = await listen(server);
  const sockets = await burstOf(port, 5);
  for (const socket of sockets) socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await Promise.all(sockets.map((socket) => new Promise((resolve) => socket.once('data', resolve))));
  assert.equal(burst.openCount, 4);
  let serverClosed = false;
  let burstClosed = false;
  server.close(() => (serverClosed = true));
  void burst.closed().then(() => (burstClosed = true));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(burstClosed, false, 'responses still running');
  server.closeAllConnections();
  await burst.closed();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(serverClosed, true);
  assert.equal(burst.openCount, 0);
});
