import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { HashThread, type PackageHash } from './hash-thread.ts';
import { PackageFileWriter } from './package-file-writer.ts';

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'writer-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** `data` in chunks of varying size, as a socket delivers them. */
function chunked(data: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const size = [1, 4096, 65_536, 300_000, 7][i % 5] ?? 1;
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return Readable.from(chunks);
}

for (const syncWrites of [true, false]) {
  for (const hashing of ['inline', 'thread'] as const) {
    test(`writes, reports and hashes every byte (${syncWrites ? 'sync' : 'thread-pool'} writes, ${hashing} hash)`, async (t) => {
      const dir = await tempDir(t);
      const thread = new HashThread();
      t.after(() => thread.close());
      const data = randomBytes(5 * 1024 * 1024 + 123);
      const reported: Buffer[] = [];
      let lastTotal = 0;
      const file = path.join(dir, 'p.part');
      const writer = new PackageFileWriter(
        file,
        (total, written) => {
          const length = written.reduce((sum, buffer) => sum + buffer.length, 0);
          assert.equal(total, lastTotal + length, 'totals follow the buffers reported');
          lastTotal = total;
          reported.push(...written);
        },
        { syncWrites, hash: hashing === 'thread' ? thread.create(file) : undefined },
      );
      await pipeline(chunked(data), writer);
      assert.equal(writer.bytesWritten, data.length);
      assert.ok(Buffer.concat(reported).equals(data), 'the buffers reported are the bytes, in order');
      assert.ok((await fsp.readFile(file)).equals(data));
      assert.equal(await writer.sha256(), createHash('sha256').update(data).digest('hex'));
    });
  }
}

for (const syncWrites of [true, false]) {
  for (const hashing of ['inline', 'thread'] as const) {
    test(`goes on from the bytes kept of a file, cutting what lies past them; the sha256 is the whole file's (${syncWrites ? 'sync' : 'thread-pool'} writes, ${hashing} hash)`, async (t) => {
      const dir = await tempDir(t);
      const thread = new HashThread();
      t.after(() => thread.close());
      const data = randomBytes(3 * 1024 * 1024 + 77);
      const kept = 1_234_567;
      const file = path.join(dir, 'p.part');
      // What a failed attempt left: the kept bytes, and a write that landed after its last report.
      await fsp.writeFile(file, Buffer.concat([data.subarray(0, kept), randomBytes(4096)]));
      const totals: number[] = [];
      const writer = new PackageFileWriter(file, (total) => totals.push(total), { syncWrites, keepBytes: kept, hash: hashing === 'thread' ? thread.create(file) : undefined });
      await pipeline(chunked(data.subarray(kept)), writer);
      assert.equal(writer.bytesWritten, data.length);
      assert.ok((totals[0] ?? 0) > kept, 'totals count the kept bytes');
      assert.ok((await fsp.readFile(file)).equals(data));
      assert.equal(await writer.sha256(), createHash('sha256').update(data).digest('hex'));
    });
  }
}

test('a kept file shorter than the bytes to keep is an error (never zero-filled)', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'p.part');
  await fsp.writeFile(file, randomBytes(100));
  const writer = new PackageFileWriter(file, () => {}, { keepBytes: 200 });
  await assert.rejects(pipeline(Readable.from([randomBytes(10)]), writer), { code: 'SHORT' });
  assert.equal((await fsp.stat(file)).size, 100);
});

test('never overwrites an existing file', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'p.part');
  await fsp.writeFile(file, 'keep');
  await assert.rejects(pipeline(Readable.from([Buffer.from('new')]), new PackageFileWriter(file)), { code: 'EEXIST' });
  assert.equal(await fsp.readFile(file, 'utf8'), 'keep');
});

test('a slow synchronous write sends the next ones through the thread pool for a while', async (t) => {
  const dir = await tempDir(t);
  const original = { writevSync: fs.writevSync, writev: fs.writev };
  const calls: string[] = [];
  let slowNext = false;
  Object.assign(fs, {
    writevSync(...args: Parameters<typeof fs.writevSync>) {
      calls.push('sync');
      if (slowNext) {
        slowNext = false;
        // A write the kernel held up (writeback throttling): longer than the writer accepts.
        const until = performance.now() + 6;
        while (performance.now() < until);
      }
      return original.writevSync(...args);
    },
    writev(...args: Parameters<typeof fs.writev>) {
      calls.push('async');
      return (original.writev as (...a: unknown[]) => void)(...args);
    },
  });
  syncBuiltinESMExports();
  t.after(() => {
    Object.assign(fs, original);
    syncBuiltinESMExports();
  });

  const chunks = Array.from({ length: 40 }, () => randomBytes(1000));
  const writer = new PackageFileWriter(path.join(dir, 'p.part'));
  const source = new Readable({ read() {} });
  const done = pipeline(source, writer);
  // One chunk at a time, each written before the next arrives.
  for (const [i, chunk] of chunks.entries()) {
    if (i === 3) slowNext = true;
    const written = new Promise<void>((resolve) => {
      const check = () => (writer.bytesWritten >= (i + 1) * 1000 ? resolve() : setImmediate(check));
      check();
    });
    source.push(chunk);
    await written;
  }
  source.push(null);
  await done;
  assert.deepEqual(calls.slice(0, 4), ['sync', 'sync', 'sync', 'sync'], 'page-cache writes on the main thread');
  assert.ok(calls.slice(4, 36).every((call) => call === 'async'), `then the thread pool: ${calls.slice(4, 36).join(',')}`);
  assert.equal(calls[36], 'sync', 'and back once the disk caught up');
});

/** A PackageHash that records what the writer tells it. */
function spyHash(): PackageHash & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    failure: null,
    kept(_path, bytes) {
      calls.push(`kept ${bytes}`);
      return Promise.resolve();
    },
    appended(total, chunks) {
      calls.push(`appended ${total} in ${chunks.length}`);
    },
    digest() {
      calls.push('digest');
      return Promise.resolve('spy');
    },
    dispose() {
      calls.push('dispose');
    },
  };
}

test('the hash given in the options is the one told about each write, and the one digested', async (t) => {
  const dir = await tempDir(t);
  const hash = spyHash();
  const writer = new PackageFileWriter(path.join(dir, 'p.part'), undefined, { hash });
  await pipeline(Readable.from([Buffer.alloc(10), Buffer.alloc(5)]), writer);
  assert.equal(await writer.sha256(), 'spy');
  assert.equal(hash.calls.at(-1), 'digest');
  const reports = hash.calls.slice(0, -1);
  assert.ok(reports.length >= 1 && reports.every((call) => call.startsWith('appended ')), hash.calls.join(','));
  assert.match(reports.at(-1) as string, /^appended 15 in /, 'the last report is the whole file');
  assert.ok(!hash.calls.includes('dispose'), 'a finished writer keeps its hash for the digest');
});

test('a writer destroyed during a thread-pool write closes its file after that write, and reports nothing more', async (t) => {
  const dir = await tempDir(t);
  const original = { writev: fs.writev, close: fs.close };
  const order: string[] = [];
  // A write the disk holds up until the test lets it return (after the download was given up).
  let writeStarted!: () => void;
  const writing = new Promise<void>((resolve) => (writeStarted = resolve));
  let releaseWrite!: () => void;
  const released = new Promise<void>((resolve) => (releaseWrite = resolve));
  Object.assign(fs, {
    writev(fd: number, buffers: NodeJS.ArrayBufferView[], position: number | null, callback: (error: Error | null, bytes: number) => void) {
      writeStarted();
      void released.then(() => {
        (original.writev as (...a: unknown[]) => void)(fd, buffers, position, (error: Error | null, bytes: number) => {
          order.push(error ? `write failed ${(error as NodeJS.ErrnoException).code}` : 'write returned');
          callback(error, bytes);
        });
      });
    },
    close(fd: number, callback: (error: Error | null) => void) {
      order.push('close');
      return (original.close as (...a: unknown[]) => void)(fd, callback);
    },
  });
  syncBuiltinESMExports();
  t.after(() => {
    Object.assign(fs, original);
    syncBuiltinESMExports();
  });

  const hash = spyHash();
  const progress: number[] = [];
  const writer = new PackageFileWriter(path.join(dir, 'p.part'), (total) => progress.push(total), { hash, syncWrites: false });
  writer.write(randomBytes(4096));
  // The file is open and the write is running (held by the mock above until released).
  await writing;
  assert.deepEqual(order, [], 'the write has not returned yet');
  const closed = new Promise<void>((resolve) => writer.once('close', () => resolve()));
  writer.destroy(new Error('master reset the connection'));
  writer.on('error', () => {});
  // Let the destroy's own ticks run first: a writer that closed under its write would have by then.
  setImmediate(releaseWrite);
  // 'close' is the writer's last event: its one write has returned and its descriptor is closed.
  await closed;
  assert.deepEqual(order, ['write returned', 'close'], 'the descriptor outlives the write using it');
  assert.deepEqual(hash.calls, ['dispose'], 'given up, and told nothing after');
  assert.deepEqual(progress, []);
});
