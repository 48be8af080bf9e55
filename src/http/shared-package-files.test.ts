import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { OpenedPackage, StoredPackage } from '../store/package-store.ts';
import { SharedPackageFiles } from './shared-package-files.ts';
import { isOpen, waitClosed } from '../../test/fds.ts';

function readAll(fd: number): string {
  const buffer = Buffer.alloc(64);
  return buffer.subarray(0, fs.readSync(fd, buffer, 0, 64, 0)).toString();
}

/** A store of one meeting's package, replaced as a meeting restart does (new file renamed over the path). */
class FakeStore {
  readonly file: string;
  current: StoredPackage | undefined;
  opens = 0;
  /** Opens wait for this before resolving (a test holds an open in flight with it). */
  gate: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.file = path.join(dir, 'package.zip');
  }

  async put(content: string): Promise<void> {
    const temp = `${this.file}.tmp`;
    await fsp.writeFile(temp, content);
    await fsp.rename(temp, this.file);
    const info = await fsp.stat(this.file);
    this.current = { path: this.file, inode: info.ino, size: info.size, sha256: content.padEnd(64, '0').slice(0, 64) } as StoredPackage;
  }

  async open(): Promise<OpenedPackage | undefined> {
    this.opens += 1;
    const pkg = this.current;
    if (!pkg) return undefined;
    const fd = fs.openSync(pkg.path, 'r');
    await this.gate;
    return { fd, pkg };
  }

  get(): StoredPackage | undefined {
    return this.current;
  }
}

async function fakeStore(t: { after: (fn: () => Promise<void>) => void }): Promise<FakeStore> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'shared-package-files-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  return new FakeStore(dir);
}

test('responses sending one package share one descriptor, opened once and closed by the last release', async (t) => {
  const store = await fakeStore(t);
  await store.put('first');
  const files = new SharedPackageFiles(store);
  const held = await Promise.all(Array.from({ length: 50 }, () => files.acquire('m1')));
  assert.equal(store.opens, 1, 'one open for the whole herd');
  const fd = held[0]?.fd;
  assert.ok(fd !== undefined);
  for (const h of held) assert.equal(h?.fd, fd);
  assert.equal(files.openCount, 1);
  for (const h of held.slice(1)) h?.release();
  assert.ok(isOpen(fd), 'open while one response still reads it');
  held[0]?.release();
  held[0]?.release(); // twice: no effect
  assert.ok(await waitClosed(fd), 'closed by the last release');
  assert.equal(files.openCount, 0);
  const again = await files.acquire('m1');
  assert.equal(store.opens, 2, 'nothing kept open between responses');
  again?.release();
});

test('a replaced package is never started from the old descriptor; responses holding it finish on the old bytes', async (t) => {
  const store = await fakeStore(t);
  await store.put('old bytes');
  const files = new SharedPackageFiles(store);
  const started = await files.acquire('m1');
  assert.ok(started);
  await store.put('new bytes');
  const after = await files.acquire('m1');
  assert.ok(after);
  assert.notEqual(after.fd, started.fd, 'a new response gets the new file');
  assert.equal(readAll(after.fd), 'new bytes');
  assert.equal(after.pkg, store.current);
  assert.equal(readAll(started.fd), 'old bytes', 'the response already started keeps its bytes');
  started.release();
  assert.ok(await waitClosed(started.fd), 'the old descriptor closes with its last response');
  assert.ok(isOpen(after.fd));
  after.release();
  assert.ok(await waitClosed(after.fd));
});

test('a replacement during the open: the waiters get the new package, not the descriptor opened for the old one', async (t) => {
  const store = await fakeStore(t);
  await store.put('old bytes');
  const files = new SharedPackageFiles(store);
  let openDone = () => {};
  store.gate = new Promise((resolve) => (openDone = resolve));
  const waiting = [files.acquire('m1'), files.acquire('m1')];
  // The open for the old package is in flight; the store is replaced before the waiters resume.
  await store.put('new bytes');
  store.gate = Promise.resolve();
  openDone();
  const held = await Promise.all(waiting);
  for (const h of held) {
    assert.ok(h);
    assert.equal(readAll(h.fd), 'new bytes');
  }
  for (const h of held) h?.release();
});

test('an evicted package: undefined, and descriptors already handed out still read until released', async (t) => {
  const store = await fakeStore(t);
  await store.put('bytes');
  const files = new SharedPackageFiles(store);
  const held = await files.acquire('m1');
  assert.ok(held);
  store.current = undefined;
  await fsp.unlink(store.file);
  assert.equal(await files.acquire('m1'), undefined);
  assert.equal(readAll(held.fd), 'bytes');
  held.release();
  assert.ok(await waitClosed(held.fd));
  assert.equal(files.openCount, 0);
});
