/**
 * A process killed at the exact system call where a sync's package is renamed over an unconfirmed
 * preheat, or where a stale preheat is removed (strace's fault injection: SIGKILL on that call).
 * A package.zip that no longer matches its manifest, or has none, is adopted as servable at
 * start-up: the preheat's documents, never checked against the start's build, must not be.
 * .ci/run installs strace; where it is missing or not permitted the test fails (it must not pass unseen).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { buildMeetingPackage } from '../reference-master/packages.ts';
import { createLogger } from '../src/log/logger.ts';
import { PackageStore } from '../src/store/package-store.ts';
import { REPO_ROOT, removeDir, tempDir } from './helpers.ts';

const logger = createLogger({ level: 'ERROR', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

const renames = 'rename,renameat,renameat2';

test('killed while a sync is promoted over an unconfirmed preheat: the preheat never comes back servable', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir('crash-preheat-');
  t.after(() => removeDir(dir));
  const preheatBytes = await readFile((await buildMeetingPackage({ dir, meetingId: 'm1', title: 'Before the start' })).path);
  const syncPath = (await buildMeetingPackage({ dir, meetingId: 'm1', title: 'At the start', packageSizeBytes: 64 * 1024 })).path;
  const syncBytes = await readFile(syncPath);

  const root = path.join(dir, 'storage');
  const store = await PackageStore.open(root, logger);
  const temp = await store.createTempPath('m1');
  await writeFile(temp, preheatBytes);
  await store.promote('m1', temp, { sha256: sha256(preheatBytes), size: preheatBytes.length, token: null, title: 'Board', source: 'preheat' });

  // Another process promotes the sync's bytes over it from a temp file of a known name, so that
  // strace (whose -P matches a call's first path) kills it on the rename of that file into place.
  const syncTemp = path.join(path.dirname(store.get('m1')!.path), 'package.zip.part-crashtest');
  const child = `
    import { copyFile } from 'node:fs/promises';
    import { createLogger } from ${JSON.stringify(path.join(REPO_ROOT, 'src/log/logger.ts'))};
    import { PackageStore } from ${JSON.stringify(path.join(REPO_ROOT, 'src/store/package-store.ts'))};
    const logger = createLogger({ level: 'ERROR', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });
    const store = await PackageStore.open(${JSON.stringify(root)}, logger);
    await copyFile(${JSON.stringify(syncPath)}, ${JSON.stringify(syncTemp)});
    await store.promote('m1', ${JSON.stringify(syncTemp)}, { sha256: ${JSON.stringify(sha256(syncBytes))}, size: ${syncBytes.length}, token: 'T1', title: 'Board', source: 'master' });
    console.log('promoted');
  `;
  const run = spawnSync(
    'strace',
    ['-f', '-qq', '-o', '/dev/null', '-P', syncTemp, '-e', `trace=${renames}`, '-e', `inject=${renames}:signal=KILL`, process.execPath, '--import', 'tsx', '--input-type=module', '-e', child],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  );
  assert.equal(run.error?.message ?? null, null, 'strace must be installed (apt-get install strace)');
  assert.ok(!run.stdout.includes('promoted'), `the child was not killed at the rename (status ${run.status}, ${run.stderr.slice(0, 300)})`);
  assert.ok(existsSync(syncTemp), 'killed before the rename');

  const reopened = await PackageStore.open(root, logger);
  const held = reopened.get('m1');
  if (held) {
    assert.notEqual(held.sha256, sha256(preheatBytes), `the preheat's bytes came back as source '${held.source}'`);
    assert.equal(held.sha256, sha256(syncBytes));
  }
});

test('killed at either unlink while a stale preheat is removed: the preheat never comes back servable', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir('crash-preheat-remove-');
  t.after(() => removeDir(dir));
  const preheatBytes = await readFile((await buildMeetingPackage({ dir, meetingId: 'm1', title: 'Before the start' })).path);
  for (const target of ['package.zip', 'manifest.json']) {
    const root = path.join(dir, `storage-${target}`);
    const store = await PackageStore.open(root, logger);
    const temp = await store.createTempPath('m1');
    await writeFile(temp, preheatBytes);
    const pkg = await store.promote('m1', temp, { sha256: sha256(preheatBytes), size: preheatBytes.length, token: null, title: 'Board', source: 'preheat' });
    const child = `
      import { createLogger } from ${JSON.stringify(path.join(REPO_ROOT, 'src/log/logger.ts'))};
      import { PackageStore } from ${JSON.stringify(path.join(REPO_ROOT, 'src/store/package-store.ts'))};
      const logger = createLogger({ level: 'ERROR', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });
      const store = await PackageStore.open(${JSON.stringify(root)}, logger);
      await store.remove('m1', 'preheat-stale');
      console.log('removed');
    `;
    const unlinks = 'unlink,unlinkat';
    const run = spawnSync(
      'strace',
      ['-f', '-qq', '-o', '/dev/null', '-P', path.join(path.dirname(pkg.path), target), '-e', `trace=${unlinks}`, '-e', `inject=${unlinks}:signal=KILL`, process.execPath, '--import', 'tsx', '--input-type=module', '-e', child],
      { cwd: REPO_ROOT, encoding: 'utf8' },
    );
    assert.equal(run.error?.message ?? null, null, 'strace must be installed (apt-get install strace)');
    assert.ok(!run.stdout.includes('removed'), `${target}: the child was not killed at its unlink (status ${run.status}, ${run.stderr.slice(0, 300)})`);
    const held = (await PackageStore.open(root, logger)).get('m1');
    assert.ok(held === undefined || held.source === 'preheat', `${target}: the stale preheat came back as source '${held?.source}' (servable)`);
  }
});
