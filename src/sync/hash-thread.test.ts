import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { descriptorsOn, waitFor } from '../../test/helpers.ts';
import { HashThread, InlineSha256, type PackageHash } from './hash-thread.ts';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'hash-thread-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Appends `data` to `file` in `step`-byte writes, reporting each to `hash` as the writer does. */
async function writeReporting(file: fsp.FileHandle, hash: PackageHash, data: Buffer, step: number, from = 0): Promise<number> {
  let total = from;
  for (let offset = 0; offset < data.length; offset += step) {
    const chunk = data.subarray(offset, offset + step);
    await file.write(chunk);
    total += chunk.length;
    hash.appended(total, [chunk]);
  }
  return total;
}

test('hashes files on the worker as they grow: equal to node:crypto, for concurrent files and odd write sizes', async (t) => {
  const dir = await tempDir(t);
  const thread = new HashThread();
  t.after(() => thread.close());
  const a = randomBytes(3 * 1024 * 1024 + 17);
  const b = randomBytes(100_001);
  const fileA = await fsp.open(path.join(dir, 'a'), 'wx');
  const fileB = await fsp.open(path.join(dir, 'b'), 'wx');
  const ha = thread.create(path.join(dir, 'a'));
  const hb = thread.create(path.join(dir, 'b'));
  // Interleaved, in writes that straddle the worker's 1 MiB reads.
  const step = 70_000;
  let totalA = 0;
  let totalB = 0;
  for (let offset = 0; offset < Math.max(a.length, b.length); offset += step) {
    if (offset < a.length) totalA = await writeReporting(fileA, ha, a.subarray(offset, offset + step), step, totalA);
    if (offset < b.length) totalB = await writeReporting(fileB, hb, b.subarray(offset, offset + step), step, totalB);
  }
  assert.equal(await ha.digest(), sha256(a));
  assert.equal(await hb.digest(), sha256(b));
  await fileA.close();
  await fileB.close();
  assert.equal(descriptorsOn(path.join(dir, 'a')), 0, 'the worker closed the file at its digest');
  assert.equal(thread.inProgress, 0);
  // An empty file, too.
  await fsp.writeFile(path.join(dir, 'empty'), '');
  assert.equal(await thread.create(path.join(dir, 'empty')).digest(), sha256(Buffer.alloc(0)));
});

test('the digest is of the bytes in the file, read back, and of the reported length only', async (t) => {
  const dir = await tempDir(t);
  const thread = new HashThread();
  t.after(() => thread.close());
  const file = path.join(dir, 'p');
  const data = randomBytes(2 * 1024 * 1024 + 5);
  await fsp.writeFile(file, data);
  const hash = thread.create(file);
  // The chunks reported are not what the worker reads: the file is.
  hash.appended(data.length - 5, [Buffer.alloc(1)]);
  assert.equal(await hash.digest(), sha256(data.subarray(0, data.length - 5)));
});

test('a file shorter than reported fails the digest (never a hash of fewer bytes)', async (t) => {
  const dir = await tempDir(t);
  const thread = new HashThread();
  t.after(() => thread.close());
  const file = path.join(dir, 'p');
  await fsp.writeFile(file, randomBytes(1000));
  const hash = thread.create(file);
  hash.appended(3 * 1024 * 1024, []);
  await assert.rejects(hash.digest(), /ends at 1000 bytes, 3145728 were written/);
  assert.equal(hash.failure?.message.includes('ends at 1000 bytes'), true, 'the failure is known to the writer too');
  await waitFor('the worker closed the failed file', () => descriptorsOn(file) === 0);
  assert.equal(thread.inProgress, 0);
  // A missing file fails the same way, and the thread goes on hashing others.
  const missing = thread.create(path.join(dir, 'nope'));
  missing.appended(10, []);
  await assert.rejects(missing.digest(), /ENOENT/);
  await fsp.writeFile(path.join(dir, 'ok'), 'x');
  const ok = thread.create(path.join(dir, 'ok'));
  ok.appended(1, []);
  assert.equal(await ok.digest(), sha256(Buffer.from('x')));
});

test('a given-up hash is forgotten; a closed thread fails what is running and hashes inline after', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'p');
  const data = randomBytes(2 * 1024 * 1024);
  await fsp.writeFile(file, data);
  const thread = new HashThread();
  t.after(() => thread.close()); // closed below already, unless an assertion failed first
  const dropped = thread.create(file);
  dropped.appended(data.length, [data]);
  await waitFor('the worker opened the file', () => descriptorsOn(file) === 1);
  dropped.dispose();
  assert.equal(thread.inProgress, 0, 'forgotten here');
  await waitFor('and on the worker, which closed the file', () => descriptorsOn(file) === 0);
  // A late report of a write that was running when the download failed is ignored, not thrown.
  dropped.appended(data.length + 1, []);
  // Given up while its digest is on the way: the digest fails, it never hangs.
  const pending = thread.create(file);
  pending.appended(data.length, [data]);
  const digest = pending.digest();
  pending.dispose();
  await assert.rejects(digest, /hash given up/);
  const running = thread.create(file);
  running.appended(data.length, [data]);
  // Either it finished before the close, or it failed: never a wrong value.
  const outcome = running.digest().then(
    (hex) => hex,
    (error: Error) => error.message,
  );
  await thread.close();
  const settled = await outcome;
  assert.ok(settled === 'hash thread closed' || settled === sha256(data), settled);
  const after = thread.create(file);
  assert.ok(after instanceof InlineSha256);
  after.appended(1, [Buffer.from('x')]);
  assert.equal(await after.digest(), sha256(Buffer.from('x')));
});

test('workers that keep failing make hashes inline: a broken worker does not fail every download forever', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'p');
  await fsp.writeFile(file, 'abc');
  const thread = new HashThread({ workerSource: "throw new Error('broken install')" });
  t.after(() => thread.close());
  for (let attempt = 1; attempt <= 3; attempt++) {
    const hash = thread.create(file);
    assert.ok(!(hash instanceof InlineSha256), `attempt ${attempt} still tries the worker`);
    hash.appended(3, [Buffer.from('abc')]);
    await assert.rejects(hash.digest(), /broken install/);
    hash.dispose();
  }
  const inline = thread.create(file);
  assert.ok(inline instanceof InlineSha256, 'after 3 failed workers');
  inline.appended(3, [Buffer.from('abc')]);
  assert.equal(await inline.digest(), sha256(Buffer.from('abc')));
});

test('start() runs the worker at once, before any hash', async (t) => {
  const thread = new HashThread();
  t.after(() => thread.close());
  assert.equal(thread.started, false);
  thread.start();
  assert.equal(thread.started, true, 'the worker runs before the first download');
  const dir = await tempDir(t);
  const data = randomBytes(2 * 1024 * 1024 + 3);
  await fsp.writeFile(path.join(dir, 'f'), data);
  assert.equal(await thread.hashStored(path.join(dir, 'f'), data.length), sha256(data), 'the started worker hashes');
  await thread.close();
  assert.equal(thread.started, false);
  thread.start();
  assert.equal(thread.started, false, 'a closed thread does not start again');
});

test('an idle worker stops after idleStopMs, not while a hash runs, and the next hash starts one again', async (t) => {
  let idleStops = 0;
  const thread = new HashThread({ idleStopMs: 50, onIdleStop: () => idleStops++ });
  t.after(() => thread.close());
  const dir = await tempDir(t);
  const data = randomBytes(3 * 1024 * 1024 + 5);
  const file = path.join(dir, 'f');
  await fsp.writeFile(file, data);
  assert.equal(thread.started, false, 'no worker before the first hash');
  let sliceWait: Promise<void> | null = null;
  const digest = thread.hashStored(file, data.length, {
    sliceBytes: 1024 * 1024,
    // Longer than idleStopMs between slices: the worker holds this hash, so it must stay up.
    beforeSlice: () => (sliceWait = new Promise((resolve) => setTimeout(resolve, 120))),
  });
  assert.equal(await digest, sha256(data));
  assert.ok(sliceWait !== null);
  await waitFor('the idle worker to stop', () => !thread.started, 5_000);
  assert.equal(thread.inProgress, 0);
  // Called once the worker has exited, once per idle stop (the node trims malloc's memory then).
  await waitFor('onIdleStop after the exit', () => idleStops === 1, 5_000);
  // A worker stopped for idleness is no failure: the next hash runs on a new worker, not inline.
  for (let round = 0; round < 4; round++) {
    const handle = await fsp.open(path.join(dir, `g${round}`), 'w');
    const hash = thread.create(path.join(dir, `g${round}`));
    assert.ok(!(hash instanceof InlineSha256), `round ${round}: on a worker`);
    const total = await writeReporting(handle, hash, data, 1024 * 1024);
    await handle.close();
    assert.equal(total, data.length);
    assert.equal(await hash.digest(), sha256(data));
    assert.equal(thread.started, true);
    await waitFor('the idle worker to stop', () => !thread.started, 5_000);
    await waitFor(`onIdleStop of round ${round}`, () => idleStops === round + 2, 5_000);
  }
});

test('hashStored hashes a stored file slice by slice, waiting for beforeSlice between slices', async (t) => {
  const dir = await tempDir(t);
  const thread = new HashThread();
  t.after(() => thread.close());
  const data = randomBytes(5 * 1024 * 1024 + 11);
  const file = path.join(dir, 'package.zip');
  await fsp.writeFile(file, data);
  let slices = 0;
  const digest = await thread.hashStored(file, data.length, {
    sliceBytes: 1024 * 1024,
    beforeSlice: async () => {
      slices++;
      await new Promise((resolve) => setTimeout(resolve, 1));
    },
  });
  assert.equal(digest, sha256(data));
  assert.equal(slices, 6, 'one wait per 1 MiB slice, the last slice included');
  assert.equal(thread.inProgress, 0, 'nothing left on the thread');

  // Fewer bytes on disk than the manifest says: rejected, never a digest of fewer bytes.
  await assert.rejects(thread.hashStored(file, data.length + 1), /ends at/);
  await assert.rejects(thread.hashStored(path.join(dir, 'missing.zip'), 10), /ENOENT/);
  assert.equal(await thread.hashStored(file, data.length), sha256(data), 'a failure does not break the next hash');
});
