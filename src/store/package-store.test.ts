import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, readSync, watch } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildMeetingPackage } from '../../reference-master/packages.ts';
import { createLogger } from '../log/logger.ts';
import { MemoryLogger } from '../log/memory-logger.ts';
import { PackageStore, type StoreEvent } from './package-store.ts';

const logger = createLogger({ level: 'ERROR', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Reads a whole file through an fd (from position 0) and closes it. */
function readFd(fd: number): Buffer {
  const size = fstatSync(fd).size;
  const buffer = Buffer.alloc(size);
  let offset = 0;
  while (offset < size) {
    const n = readSync(fd, buffer, offset, size - offset, offset);
    if (n === 0) break;
    offset += n;
  }
  closeSync(fd);
  return buffer.subarray(0, offset);
}

describe('PackageStore', () => {
  let fixtures: string;
  let zipA: Buffer;
  let zipB: Buffer;

  before(async () => {
    fixtures = await mkdtemp(path.join(tmpdir(), 'store-fixtures-'));
    // Two builds of the same meeting: same layout, different bytes (like a restart on the master).
    zipA = await readFile((await buildMeetingPackage({ dir: fixtures, meetingId: 'm1', title: 'A' })).path);
    zipB = await readFile((await buildMeetingPackage({ dir: fixtures, meetingId: 'm1', title: 'B', packageSizeBytes: 64 * 1024 })).path);
    assert.notEqual(sha256(zipA), sha256(zipB));
  });
  const folders: string[] = [];
  after(async () => {
    for (const folder of [fixtures, ...folders]) await rm(folder, { recursive: true, force: true });
  });

  async function freshStore(): Promise<{ root: string; store: PackageStore; events: StoreEvent[] }> {
    const folder = await mkdtemp(path.join(tmpdir(), 'store-'));
    folders.push(folder);
    const root = path.join(folder, 'storage');
    const store = await PackageStore.open(root, logger);
    const events: StoreEvent[] = [];
    store.events.on('change', (event) => events.push(event));
    return { root, store, events };
  }

  async function promoteBytes(store: PackageStore, meetingId: string, bytes: Buffer, token: string | null = 'T1') {
    const temp = await store.createTempPath(meetingId);
    await writeFile(temp, bytes);
    return store.promote(meetingId, temp, { sha256: sha256(bytes), size: bytes.length, token, title: `title ${meetingId}` });
  }

  test('open creates the folder; temp paths live in the meeting folder', async () => {
    const { root, store } = await freshStore();
    assert.deepEqual(await readdir(root), []);
    assert.deepEqual(store.list(), []);
    const temp = await store.createTempPath('m1');
    assert.equal(path.dirname(temp), path.join(root, 'meeting_m1'));
    assert.match(path.basename(temp), /^package\.zip\.part-[0-9a-f]+$/);
    assert.notEqual(await store.createTempPath('m1'), temp);
  });

  test('promote puts a verified file in place with its manifest and emits promoted', async () => {
    const { root, store, events } = await freshStore();
    const temp = await store.createTempPath('m1');
    await writeFile(temp, zipA);
    const pkg = await store.promote('m1', temp, { sha256: sha256(zipA), size: zipA.length, token: 'T1', title: '会议' });

    assert.equal(pkg.path, path.join(root, 'meeting_m1', 'package.zip'));
    assert.deepEqual(await readFile(pkg.path), zipA);
    assert.deepEqual((await readdir(path.join(root, 'meeting_m1'))).sort(), ['manifest.json', 'package.zip'], 'the temp file was renamed');
    const manifest = JSON.parse(await readFile(path.join(root, 'meeting_m1', 'manifest.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(manifest.sha256, sha256(zipA));
    assert.equal(manifest.size, zipA.length);
    assert.equal(manifest.token, 'T1');
    assert.equal(manifest.title, '会议');
    assert.equal(manifest.inode, (await stat(pkg.path)).ino);
    assert.equal(store.get('m1')?.sha256, sha256(zipA));
    assert.equal(store.usedBytes(), zipA.length);
    assert.deepEqual(events.map((e) => [e.type, e.meetingId, e.type === 'promoted' && e.replaced]), [['promoted', 'm1', false]]);

    await promoteBytes(store, 'm1', zipB);
    const last = events.at(-1);
    assert.ok(last?.type === 'promoted' && last.replaced, 'a second promote reports a replacement');
    assert.equal(store.usedBytes(), zipB.length);
  });

  test('promote refuses a temp file whose size is not the one announced', async () => {
    const { root, store } = await freshStore();
    const temp = await store.createTempPath('m1');
    await writeFile(temp, zipA.subarray(0, 100));
    await assert.rejects(store.promote('m1', temp, { sha256: sha256(zipA), size: zipA.length, token: null, title: 't' }));
    assert.equal(store.get('m1'), undefined);
    assert.ok(!(await readdir(path.join(root, 'meeting_m1'))).includes('package.zip'));
  });

  test('open returns an fd on the manifest\'s inode, and nothing for a file swapped behind the store\'s back', async () => {
    const { root, store } = await freshStore();
    await promoteBytes(store, 'm1', zipA);
    const opened = await store.open('m1');
    assert.ok(opened);
    assert.equal(opened.pkg.sha256, sha256(zipA));
    assert.deepEqual(readFd(opened.fd), zipA);
    assert.equal(await store.open('other'), undefined);

    const intruder = path.join(root, 'meeting_m1', 'intruder');
    await writeFile(intruder, zipB);
    await rename(intruder, path.join(root, 'meeting_m1', 'package.zip'));
    assert.equal(await store.open('m1'), undefined, 'a different inode is never served as the manifest\'s package');
  });

  test('a reader keeps the old bytes when the package is replaced', async () => {
    const { store } = await freshStore();
    await promoteBytes(store, 'm1', zipA);
    const reader = await store.open('m1');
    assert.ok(reader);
    await promoteBytes(store, 'm1', zipB);
    assert.deepEqual(readFd(reader.fd), zipA, 'the tablet that started finishes on the old bytes');
    const next = await store.open('m1');
    assert.ok(next);
    assert.equal(next.pkg.sha256, sha256(zipB));
    assert.deepEqual(readFd(next.fd), zipB);
  });

  test('a reader keeps the old bytes when the package is removed; new readers get nothing', async () => {
    const { root, store, events } = await freshStore();
    await promoteBytes(store, 'm1', zipA);
    const reader = await store.open('m1');
    assert.ok(reader);
    assert.equal(await store.remove('m1', 'ended'), true);
    assert.equal(store.get('m1'), undefined);
    assert.equal(await store.open('m1'), undefined);
    assert.ok(!(await readdir(root)).includes('meeting_m1'), 'the empty folder is removed');
    assert.deepEqual(readFd(reader.fd), zipA);
    assert.equal(await store.remove('m1', 'ended'), false);
    assert.deepEqual(events.filter((e) => e.type === 'removed'), [{ type: 'removed', meetingId: 'm1', reason: 'ended' }]);
    assert.equal(store.usedBytes(), 0);
  });

  test('remove with a condition removes only a package that still meets it', async () => {
    const { store } = await freshStore();
    await promoteBytes(store, 'm1', zipA);
    assert.equal(await store.remove('m1', 'preheat-unscheduled', { if: (pkg) => pkg.source === 'preheat' }), false);
    assert.equal(store.get('m1')?.sha256, sha256(zipA), 'kept: not a preheat');
    assert.equal(await store.remove('m1', 'ended', { if: (pkg) => pkg.source === 'master' }), true);
    assert.equal(store.get('m1'), undefined);
  });

  test('remove leaves the folder of a download in progress', async () => {
    const { root, store } = await freshStore();
    await promoteBytes(store, 'm1', zipA);
    const temp = await store.createTempPath('m1');
    await writeFile(temp, 'partial');
    await store.remove('m1', 'ended');
    assert.deepEqual(await readdir(path.join(root, 'meeting_m1')), [path.basename(temp)]);
  });

  test('retag and promote record the build equivalent bytes stand for; never the bytes\' own build', async () => {
    const { root, store } = await freshStore();
    const B2 = 'b'.repeat(64);
    await promoteBytes(store, 'm1', zipA, 'T1');
    const own = store.get('m1')!.buildId;
    await store.retag('m1', 'T2', own);
    assert.equal(store.get('m1')?.standsFor, null, 'its own build is no news');
    await store.retag('m1', 'T2', B2);
    assert.equal(store.get('m1')?.standsFor, B2);
    await store.retag('m1', 'T3');
    assert.equal(store.get('m1')?.standsFor, B2, 'a plain retag keeps it');
    assert.equal((await PackageStore.open(root, logger)).get('m1')?.standsFor, B2, 'on disk');

    const temp = await store.createTempPath('m2');
    await writeFile(temp, zipB);
    const pkg = await store.promote('m2', temp, { sha256: sha256(zipB), size: zipB.length, token: 'T3', title: 'B', standsFor: B2 });
    assert.equal(pkg.standsFor, B2);
  });

  test('a manifest written before the rename (confirmedBuildId) keeps the build it stands for, and is rewritten under standsFor', async () => {
    const { root, store } = await freshStore();
    const B2 = 'b'.repeat(64);
    await promoteBytes(store, 'm1', zipA, 'T1');
    // The manifest as a node of 0.1.0 wrote it: the same field under its old name.
    const file = path.join(root, 'meeting_m1', 'manifest.json');
    const { standsFor: _unused, ...rest } = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...rest, source: 'confirmed', confirmedBuildId: B2 }));
    const upgraded = await PackageStore.open(root, logger);
    assert.equal(upgraded.get('m1')?.standsFor, B2, 'the upgraded node reads the old field');
    assert.equal(upgraded.get('m1')?.source, 'confirmed');
    await upgraded.retag('m1', 'T2');
    const rewritten = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    assert.equal(rewritten.standsFor, B2, 'written back under the new name');
    assert.equal(rewritten.confirmedBuildId, undefined, 'the old name is not written again');
  });

  test('retag records the new token on disk and in memory, once', async () => {
    const { root, store, events } = await freshStore();
    await promoteBytes(store, 'm1', zipA, 'T1');
    await store.retag('m1', 'T2');
    assert.equal(store.get('m1')?.token, 'T2');
    const manifest = JSON.parse(await readFile(path.join(root, 'meeting_m1', 'manifest.json'), 'utf8')) as { token: string; sha256: string };
    assert.equal(manifest.token, 'T2');
    assert.equal(manifest.sha256, sha256(zipA));
    await store.retag('m1', 'T2');
    await store.retag('absent', 'T2');
    assert.deepEqual(events.filter((e) => e.type === 'retagged'), [{ type: 'retagged', meetingId: 'm1', token: 'T2' }]);

    const reopened = await PackageStore.open(root, logger);
    assert.equal(reopened.get('m1')?.token, 'T2', 'the token survives a restart');
    assert.equal(reopened.get('m1')?.source, 'master', 'a matching manifest is trusted as it is');
  });

  test('start-up: temp files removed, a manifest for another inode re-verified, broken zips deleted, odd folders left alone', async () => {
    const { root, store } = await freshStore();
    await promoteBytes(store, 'm1', zipA, 'T1');
    await promoteBytes(store, 'm2', zipA, 'T1');
    // m1: a crash after the manifest of a newer download was written but before its rename.
    const manifestPath = path.join(root, 'meeting_m1', 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Record<string, unknown>;
    await writeFile(manifestPath, JSON.stringify({ ...manifest, inode: Number(manifest.inode) + 1, sha256: sha256(zipB), size: zipB.length }));
    await writeFile(path.join(root, 'meeting_m1', 'package.zip.part-abcdef'), zipB.subarray(0, 10));
    // m2: the package was truncated (a copy gone wrong): no longer a complete zip.
    await writeFile(path.join(root, 'meeting_m2', 'package.zip'), zipA.subarray(0, zipA.length - 10));
    await writeFile(path.join(root, 'stray.tmp-1234'), 'x');
    await mkdir(path.join(root, 'meeting_bad.id'));
    await writeFile(path.join(root, 'meeting_bad.id', 'package.zip'), zipA);

    const reopened = await PackageStore.open(root, logger);
    const m1 = reopened.get('m1');
    assert.ok(m1);
    assert.equal(m1.sha256, sha256(zipA), 'hashed from the bytes, not taken from the stale manifest');
    assert.equal(m1.source, 'adopted');
    assert.equal(m1.token, null);
    assert.deepEqual((await readdir(path.join(root, 'meeting_m1'))).sort(), ['manifest.json', 'package.zip']);
    assert.equal(reopened.get('m2'), undefined);
    assert.ok(!(await readdir(root)).includes('meeting_m2'));
    assert.ok(!(await readdir(root)).includes('stray.tmp-1234'));
    assert.equal(reopened.list().length, 1);
    assert.deepEqual(await readdir(path.join(root, 'meeting_bad.id')), ['package.zip'], 'not ours to delete');
  });

  test('meeting ids that could escape the storage folder are refused', async () => {
    const { store } = await freshStore();
    for (const id of ['..', '../x', 'a/b', 'a.b', '']) {
      assert.throws(() => store.meetingDir(id), /invalid meeting id/, id);
      await assert.rejects(store.createTempPath(id));
    }
  });
});

// The sync loop's evict ('ended') runs store.remove() while the job it just cancelled may be inside
// store.promote() (a cancel does not stop a promotion): both touch meeting_m1/package.zip. The
// removal is started the moment the new file is renamed into place (inotify), before the promotion
// has recorded it: the window in which an unserialized removal unlinked the new file.
test('remove() racing promote() of the same meeting never leaves a package in memory without its file', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'store-race-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = await PackageStore.open(dir, new MemoryLogger());
  const add = async (id: string) => {
    const data = randomBytes(4096);
    const temp = await store.createTempPath(id);
    await writeFile(temp, data);
    return { temp, meta: { sha256: createHash('sha256').update(data).digest('hex'), size: data.length, token: 'T', title: id } };
  };
  let phantoms = 0;
  const trials = 20;
  for (let i = 0; i < trials; i++) {
    const id = `m${i}`;
    const old = await add(id);
    await store.promote(id, old.temp, old.meta);
    const next = await add(id);
    let removing: Promise<boolean> | null = null;
    const watcher = watch(store.meetingDir(id), (_event, name) => {
      if (name === 'package.zip' && !removing) removing = store.remove(id, 'ended');
    });
    await store.promote(id, next.temp, next.meta);
    await waitFor(() => removing !== null);
    watcher.close();
    await removing;
    const held = store.get(id);
    if (held && !existsSync(held.path)) phantoms++;
  }
  assert.equal(phantoms, 0, `${phantoms}/${trials} trials: the store holds a package whose file was deleted`);
});

async function waitFor(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(check(), 'timed out');
}
