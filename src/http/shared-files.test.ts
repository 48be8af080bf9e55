import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SharedReadFiles } from './shared-files.ts';
import { isOpen, waitClosed } from '../../test/fds.ts';

async function tempFile(t: { after: (fn: () => Promise<void>) => void }, content: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'shared-files-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'part');
  await fsp.writeFile(file, content);
  return file;
}

test('readers of one file at once share one descriptor, closed by the last release', async (t) => {
  const file = await tempFile(t, 'hello');
  const files = new SharedReadFiles();
  const [a, b, c] = await Promise.all([files.acquire(file), files.acquire(file), files.acquire(file)]);
  assert.ok(a && b && c);
  assert.equal(a.fd, b.fd);
  assert.equal(a.fd, c.fd);
  assert.equal(files.openCount, 1);
  const buffer = Buffer.alloc(5);
  fs.readSync(b.fd, buffer, 0, 5, 0);
  assert.equal(buffer.toString(), 'hello');

  a.release();
  a.release(); // twice is once
  b.release();
  assert.ok(isOpen(c.fd), 'still held by c');
  c.release();
  assert.equal(files.openCount, 0);
  assert.ok(await waitClosed(c.fd), 'closed after the last release');
});

test('after the last release the next reader opens the file again (it may have been replaced)', async (t) => {
  const file = await tempFile(t, 'one');
  const files = new SharedReadFiles();
  const first = await files.acquire(file);
  assert.ok(first);
  first.release();
  await fsp.rm(file);
  await fsp.writeFile(file, 'two');
  const second = await files.acquire(file);
  assert.ok(second);
  const buffer = Buffer.alloc(3);
  fs.readSync(second.fd, buffer, 0, 3, 0);
  assert.equal(buffer.toString(), 'two');
  second.release();
});

test('a file renamed or removed while held keeps being read through the shared descriptor', async (t) => {
  const file = await tempFile(t, 'bytes');
  const files = new SharedReadFiles();
  const held = await files.acquire(file);
  assert.ok(held);
  await fsp.rename(file, `${file}.zip`);
  const buffer = Buffer.alloc(5);
  fs.readSync(held.fd, buffer, 0, 5, 0);
  assert.equal(buffer.toString(), 'bytes');
  held.release();
});

test('a missing file is null and not remembered; other open errors reject', async (t) => {
  const file = await tempFile(t, 'x');
  const files = new SharedReadFiles();
  const missing = `${file}-missing`;
  assert.equal(await files.acquire(missing), null);
  assert.equal(files.openCount, 0);
  await fsp.writeFile(missing, 'now here');
  const found = await files.acquire(missing);
  assert.ok(found);
  found.release();

  // A directory opens read-only on Linux, so use a path through a file (ENOTDIR).
  await assert.rejects(files.acquire(path.join(file, 'below')), { code: 'ENOTDIR' });
  assert.equal(files.openCount, 0);
});
