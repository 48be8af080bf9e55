import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, test, after, before } from 'node:test';
import { sendFile } from './send-file.ts';
import { readEnvironment } from '../config/cli-options.ts';
import { ERRNO, loadZeroCopy, socketFd, type ZeroCopy } from './zero-copy.ts';

const SUITE_TIMEOUT = { timeout: 60_000 };

describe('sendfile addon', SUITE_TIMEOUT, () => {
  let dir: string;
  let filePath: string;
  const content = randomBytes(8 * 1024 * 1024 + 4099);

  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'zero-copy-'));
    filePath = path.join(dir, 'p.zip');
    await fsp.writeFile(filePath, content);
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  test('is built by the install and loads (the node would silently copy otherwise)', () => {
    const loaded = loadZeroCopy({});
    assert.ok(loaded.zeroCopy, `not loaded: ${loaded.reason}`);
    assert.equal(loadZeroCopy({ enabled: readEnvironment({ EDGE_ZERO_COPY: '0' }).zeroCopy }).zeroCopy, null, 'EDGE_ZERO_COPY=0 turns it off');
  });

  test('rejects arguments that are not non-negative integers', () => {
    const addon = loadZeroCopy({}).zeroCopy;
    assert.ok(addon);
    assert.throws(() => addon.sendfile(-1, 0, 0, 0), TypeError);
    assert.throws(() => (addon.sendfile as (...args: unknown[]) => number)(1, 0, 0), TypeError);
    assert.ok(addon.sendfile(1_000_000, 1_000_001, 0, 10) < 0, 'a bad fd is a negative errno, not a throw');
  });

  /** Serves the file with sendFile and `zeroCopy`, downloads it, returns the body and the result. */
  async function serve(zeroCopy: ZeroCopy) {
    const results: Array<ReturnType<typeof sendFile>> = [];
    const server = http.createServer((req, res) => {
      const fd = fs.openSync(filePath, 'r');
      results.push(sendFile(req, res, { fd, size: content.length, sha256: 'a'.repeat(64), lastModified: new Date(0), filename: 'p.zip' }, { idleTimeoutMs: 10_000, zeroCopy }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const body = Buffer.from(await (await fetch(`http://127.0.0.1:${port}/`)).arrayBuffer());
      const result = await results[0];
      assert.ok(result);
      return { body, result };
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  /** The real addon, counting the bytes it sent; `beforeCall` runs first (to hold the thread). */
  function countingAddon(options: { beforeCall?: () => void; maxCount?: number } = {}) {
    const addon = loadZeroCopy({}).zeroCopy;
    assert.ok(addon);
    const counted = { bytes: 0 };
    const zeroCopy: ZeroCopy = {
      sendfile: (socket, file, offset, count) => {
        options.beforeCall?.();
        const sent = addon.sendfile(socket, file, offset, Math.min(count, options.maxCount ?? count));
        if (sent > 0) counted.bytes += sent;
        return sent;
      },
      threadPreemptions: () => addon.threadPreemptions?.() ?? -1,
    };
    return { zeroCopy, counted };
  }

  test("the addon counts the event loop thread's preemptions, not the process's", () => {
    const addon = loadZeroCopy({}).zeroCopy;
    assert.ok(addon?.threadPreemptions, 'the addon built by npm install has threadPreemptions');
    const own = addon.threadPreemptions();
    assert.ok(Number.isInteger(own) && own >= 0, `a count: ${own}`);
    assert.ok(own <= process.resourceUsage().involuntaryContextSwitches, "one thread's count is within the whole process's");
  });

  test('a GET sends most bytes with sendfile and the body is exact', async () => {
    const { zeroCopy, counted } = countingAddon();
    const { body, result } = await serve(zeroCopy);
    const viaSendfile = counted.bytes;
    assert.ok(body.equals(content));
    assert.equal(result.completed, true);
    assert.equal(result.bytesSent, content.length);
    assert.ok(viaSendfile > content.length * 0.9, `${viaSendfile} of ${content.length} bytes went through sendfile`);
  });

  test('a slow sendfile that read nothing from the disk (a preempted thread) keeps the response on sendfile', async () => {
    // Every call holds the thread 3 ms, as a busy machine's scheduler would; the file is cached.
    const holdThread = () => {
      const until = performance.now() + 3;
      while (performance.now() < until);
    };
    const { zeroCopy, counted } = countingAddon({ beforeCall: holdThread, maxCount: 1024 * 1024 });
    const { body, result } = await serve(zeroCopy);
    const viaSendfile = counted.bytes;
    assert.ok(body.equals(content));
    assert.equal(result.completed, true);
    assert.ok(viaSendfile > content.length * 0.9, `${viaSendfile} of ${content.length} bytes went through sendfile`);
  });

  test('a sendfile that waits 60 ms off the CPU without being preempted (a network file system) moves the response to copying', async () => {
    // Atomics.wait blocks the thread voluntarily, as a read from NFS or FUSE does, with no block reads.
    const parked = new Int32Array(new SharedArrayBuffer(4));
    const waitOffCpu = () => void Atomics.wait(parked, 0, 0, 60);
    const { zeroCopy, counted } = countingAddon({ beforeCall: waitOffCpu, maxCount: 1024 * 1024 });
    const { body, result } = await serve(zeroCopy);
    assert.ok(body.equals(content));
    assert.equal(result.completed, true);
    assert.ok(counted.bytes < content.length * 0.9, `${counted.bytes} of ${content.length} bytes went through sendfile though every call waited 60 ms`);
  });

  test('short sends interleaved with copied chunks keep the bytes in order', async () => {
    const addon = loadZeroCopy({}).zeroCopy;
    assert.ok(addon);
    let calls = 0;
    // At most 10,000 bytes per call, and every third call "finds the socket full".
    const stingy: ZeroCopy = {
      sendfile: (socket, file, offset, count) => {
        calls += 1;
        if (calls % 3 === 0) return ERRNO.EAGAIN;
        return addon.sendfile(socket, file, offset, Math.min(count, 10_000));
      },
    };
    const { body, result } = await serve(stingy);
    assert.ok(calls > 10);
    assert.ok(body.equals(content));
    assert.equal(result.completed, true);
  });

  test('a file or socket sendfile refuses (EINVAL) falls back to copying for the rest', async () => {
    let calls = 0;
    const refusing: ZeroCopy = {
      sendfile: () => {
        calls += 1;
        return ERRNO.EINVAL;
      },
    };
    const { body, result } = await serve(refusing);
    assert.equal(calls, 1, 'asked once, then copied');
    assert.ok(body.equals(content));
    assert.equal(result.completed, true);
  });

  test('an I/O error from sendfile fails the response instead of ending it short', async () => {
    const failing: ZeroCopy = { sendfile: () => -5 /* EIO */ };
    const results: Array<ReturnType<typeof sendFile>> = [];
    const server = http.createServer((req, res) => {
      const fd = fs.openSync(filePath, 'r');
      results.push(sendFile(req, res, { fd, size: content.length, sha256: 'a'.repeat(64), lastModified: new Date(0), filename: 'p.zip' }, { idleTimeoutMs: 10_000, zeroCopy: failing }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const complete = await new Promise<boolean>((resolve) => {
        http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
          res.resume();
          res.on('close', () => resolve(res.complete));
          res.on('error', () => {});
        }).on('error', () => resolve(false));
      });
      assert.equal(complete, false);
      const result = await results[0];
      assert.equal(result?.abortReason, 'server-error');
      assert.match(result?.error?.message ?? '', /errno 5/);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('socketFd: a plain TCP socket has one; nothing else does', async () => {
    assert.equal(socketFd(null), null);
    assert.equal(socketFd({ encrypted: true, _handle: { fd: 5 } } as unknown as net.Socket), null);
    const server = http.createServer((req, res) => {
      res.end(String(socketFd(req.socket)));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const text = await (await fetch(`http://127.0.0.1:${port}/`)).text();
      assert.ok(Number(text) > 2, `fd ${text}`);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
