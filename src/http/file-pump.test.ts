import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { FilePump } from './file-pump.ts';

/** One response driven by `drive`, read whole by a client; resolves the body the client got. */
async function exchange(drive: (res: http.ServerResponse) => Promise<void>): Promise<Buffer> {
  const server = http.createServer((_req, res) => {
    void drive(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as net.AddressInfo;
    return Buffer.from(await (await fetch(`http://127.0.0.1:${port}/`)).arrayBuffer());
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

test('appendShared: a caught-up client takes the download\'s own buffers; otherwise it reads the file later', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'file-pump-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'part');
  const parts = [randomBytes(70_000), randomBytes(50_000), randomBytes(90_000)];
  const whole = Buffer.concat(parts);
  await fsp.writeFile(file, whole);
  const decisions: boolean[] = [];

  const body = await exchange(async (res) => {
    const fd = fs.openSync(file, 'r');
    const pump = new FilePump(res, fd, 0);
    const [first = Buffer.alloc(0), second = Buffer.alloc(0), third = Buffer.alloc(0)] = parts;
    // Caught up at 0: written as is.
    decisions.push(pump.appendShared(0, [first]));
    // A write is still pending: declined (a slow client never queues shared buffers).
    decisions.push(pump.appendShared(first.length, [second]));
    await pump.flushed();
    // Behind (it never got `second`): declined, the bytes are read from the file instead.
    decisions.push(pump.appendShared(first.length + second.length, [third]));
    assert.equal(await pump.sendUntil(whole.length), true);
    res.end();
    fs.closeSync(fd);
  });
  assert.deepEqual(decisions, [true, false, false]);
  assert.ok(body.equals(whole), 'every byte once, in order');
});

test('responses started together each send their first chunk before any sends more', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'file-pump-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'package');
  const whole = randomBytes(2 * 1024 * 1024);
  await fsp.writeFile(file, whole);
  const fd = fs.openSync(file, 'r');
  t.after(() => fs.closeSync(fd));

  const tablets = 3;
  const waiting: http.ServerResponse[] = [];
  let sentAfterFirstTurn: number[] = [];
  const server = http.createServer((_req, res) => {
    waiting.push(res);
    if (waiting.length < tablets) return;
    // A herd: every response starts in the same turn of the event loop. This callback is queued
    // before any pump runs, so it sees what each had sent when the others got their turn.
    setImmediate(() => (sentAfterFirstTurn = pumps.map((pump) => pump.bytesSent)));
    const pumps = waiting.map((response) => new FilePump(response, fd, 0));
    for (const [i, pump] of pumps.entries()) {
      void pump.sendUntil(whole.length).then(() => waiting[i]?.end());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as net.AddressInfo;
  const bodies = await Promise.all(
    Array.from({ length: tablets }, async () => Buffer.from(await (await fetch(`http://127.0.0.1:${port}/`)).arrayBuffer())),
  );
  for (const body of bodies) assert.ok(body.equals(whole));
  assert.equal(sentAfterFirstTurn.length, tablets);
  for (const sent of sentAfterFirstTurn) {
    assert.ok(sent > 0 && sent <= 64 * 1024, `only a first chunk before the others' turn (sent ${sent})`);
  }
});
