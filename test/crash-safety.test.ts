/**
 * The node as a real process: killed with SIGKILL in the middle of a sync (no partial package is
 * ever promoted or served, and the restarted node finishes the sync), and stopped with SIGTERM
 * (exit 0, unregistered from the master).
 */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import {
  cleanupStack,
  fetchRaw,
  isPartFile,
  masterSha,
  meetingDirEntries,
  packageUrl,
  removeDir,
  sha256Hex,
  killProcess,
  spawnNodeProcess,
  startMaster,
  tempDir,
  testConfig,
  waitFor,
  type NodeProcess,
} from './helpers.ts';

const KILLS = 3;

async function partFileSize(storageDir: string, meetingId: string): Promise<{ name: string; size: number } | null> {
  for (const name of await meetingDirEntries(storageDir, meetingId)) {
    if (!isPartFile(name)) continue;
    try {
      return { name, size: (await stat(path.join(storageDir, `meeting_${meetingId}`, name))).size };
    } catch {
      // Removed between the listing and the stat.
    }
  }
  return null;
}


test(`kill -9 mid-sync (${KILLS} times): no partial package is ever promoted or served, and the restarted node completes the sync`, async (t) => {
  const defer = cleanupStack(t);
  // About 4 s per full download: plenty of time to kill while the temp file grows.
  const m = await startMaster({ throttleBytesPerSec: 500_000 });
  defer(() => m.close());
  m.master.addMeeting({ id: 'm-crash', title: 'Crash test', packageSizeBytes: 2_000_000 });
  await m.master.startMeeting('m-crash');
  const sha = masterSha(m.master, 'm-crash');
  const dir = await tempDir();
  defer(() => removeDir(dir));
  const configPath = path.join(dir, 'node_config.json');
  await writeFile(configPath, JSON.stringify(testConfig(m.port), null, 2));
  const storageDir = path.join(dir, 'storage');

  let leftover: string | null = null;
  for (let round = 0; round < KILLS; round++) {
    const proc = await spawnNodeProcess(configPath);
    defer(() => killProcess(proc));
    const entriesAtStart = await meetingDirEntries(storageDir, 'm-crash');
    if (leftover) assert.ok(!entriesAtStart.includes(leftover), `round ${round}: the previous run's temp file is removed at start`);
    assert.ok(!entriesAtStart.includes('package.zip'), `round ${round}: nothing was promoted`);

    const growing = await waitFor(
      `round ${round}: the temp file to grow`,
      async () => {
        const part = await partFileSize(storageDir, 'm-crash');
        return part && part.size > 200_000 ? part : null;
      },
      20_000,
    );
    proc.child.kill('SIGKILL');
    const exit = await proc.exited;
    assert.equal(exit.signal, 'SIGKILL');
    const after = await meetingDirEntries(storageDir, 'm-crash');
    assert.ok(!after.includes('package.zip'), `round ${round}: no package.zip after the kill (${after.join(', ')})`);
    assert.ok(after.includes(growing.name), `round ${round}: killed mid-download (the temp file is still there)`);
    leftover = growing.name;
  }

  const proc = await spawnNodeProcess(configPath);
  defer(() => killProcess(proc));
  const entriesAtStart = await meetingDirEntries(storageDir, 'm-crash');
  assert.ok(leftover && !entriesAtStart.includes(leftover), 'the last temp file is removed at start');
  // A tablet asking now: 404 until the first poll lists the meeting, then it waits for the sync
  // (or is told to retry). Never a partial package.
  const res = await waitFor(
    'the restarted node to answer for the meeting',
    async () => {
      const answer = await fetchRaw(packageUrl(proc.url, 'm-crash'));
      return answer.status === 404 ? null : answer;
    },
    20_000,
    100,
  );
  if (res.status === 200) {
    assert.equal(sha256Hex(res.body), sha, 'served bytes are the complete package');
  } else {
    assert.equal(res.status, 503);
  }
  await waitFor(
    'the restarted node to finish the sync',
    async () => (await meetingDirEntries(storageDir, 'm-crash')).includes('package.zip'),
    30_000,
    100,
  );
  const stored = await readFile(path.join(storageDir, 'meeting_m-crash', 'package.zip'));
  assert.equal(sha256Hex(stored), sha, 'the stored package is the master\'s');
  const served = await fetchRaw(packageUrl(proc.url, 'm-crash'));
  assert.equal(served.status, 200);
  assert.equal(sha256Hex(served.body), sha);
  await waitFor('no temp files left', async () => (await meetingDirEntries(storageDir, 'm-crash')).filter(isPartFile).length === 0, 10_000);
  const manifest = JSON.parse(await readFile(path.join(storageDir, 'meeting_m-crash', 'manifest.json'), 'utf8')) as { sha256: string };
  assert.equal(manifest.sha256, sha);
});

test('SIGTERM: the node process unregisters and exits 0', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Bye' });
  await m.master.startMeeting('m1');
  const dir = await tempDir();
  defer(() => removeDir(dir));
  const configPath = path.join(dir, 'node_config.json');
  await writeFile(configPath, JSON.stringify(testConfig(m.port), null, 2));

  const proc = await spawnNodeProcess(configPath);
  defer(() => killProcess(proc));
  const nodeId = (JSON.parse(await readFile(configPath, 'utf8')) as { nodeId: string }).nodeId;
  assert.match(nodeId, /^node-[0-9a-f]{8}$/, 'the generated nodeId is persisted');
  await waitFor('the node registered and synced', () => m.master.nodes().find((v) => v.nodeId === nodeId)?.syncedMeetings.includes('m1'), 20_000);

  proc.child.kill('SIGTERM');
  const exit = await proc.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, `exit status; stderr:\n${proc.stderr()}`);
  assert.equal(m.master.nodes().some((v) => v.nodeId === nodeId), false, 'unregistered from the master');
  assert.ok((await meetingDirEntries(path.join(dir, 'storage'), 'm1')).includes('package.zip'), 'the package stays for the next start');
});
