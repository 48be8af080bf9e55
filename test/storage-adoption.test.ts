/**
 * A reference node's storage folder (storage/meeting_X/package.zip, no manifest) is adopted at
 * start: complete zips are verified, hashed and served with their ETag; truncated or corrupt ones
 * are deleted; temp files from a crash are removed. An unreachable master never empties it.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { buildMeetingPackage } from '../reference-master/packages.ts';
import {
  cleanupStack,
  fetchRaw,
  masterPackageBytes,
  masterSha,
  meetingDirEntries,
  packageUrl,
  removeDir,
  sha256Hex,
  startMaster,
  startMasterOnPort,
  startNode,
  tempDir,
  testConfig,
  waitFor,
} from './helpers.ts';

const QUIET = { syncInterval: 3600, heartbeat: { interval: 300 } };

async function putFile(file: string, bytes: Buffer | string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, bytes);
}

/** A zip the way the master builds them, for a meeting the test master does not know. */
async function someZip(meetingId: string): Promise<Buffer> {
  const dir = await tempDir('edge-zip-');
  try {
    const built = await buildMeetingPackage({ dir, meetingId, title: `Old ${meetingId}` });
    return await readFile(built.path);
  } finally {
    await removeDir(dir);
  }
}

test('a reference node\'s storage is adopted: verified, hashed, served with its ETag; corrupt packages and temp files are removed', async (t) => {
  const defer = cleanupStack(t);
  // Slow enough that the corrupt meeting's fresh download is still running when we look.
  const m = await startMaster({ throttleBytesPerSec: 1_000_000 });
  defer(() => m.close());
  m.master.addMeeting({ id: 'm-adopt', title: 'Adopted' });
  m.master.addMeeting({ id: 'm-corrupt', title: 'Truncated on disk', packageSizeBytes: 1_500_000 });
  await m.master.startMeeting('m-adopt');
  await m.master.startMeeting('m-corrupt');
  const adoptBytes = await masterPackageBytes(m.url, 'm-adopt');
  const corruptSource = await masterPackageBytes(m.url, 'm-corrupt');
  m.master.resetStats();

  const dir = await tempDir();
  defer(() => removeDir(dir));
  const storage = path.join(dir, 'storage');
  await putFile(path.join(storage, 'meeting_m-adopt', 'package.zip'), adoptBytes);
  await putFile(path.join(storage, 'meeting_m-adopt', 'package.zip.part-1a2b3c'), adoptBytes.subarray(0, 100));
  await putFile(path.join(storage, 'meeting_m-corrupt', 'package.zip'), corruptSource.subarray(0, corruptSource.length >> 1));
  await putFile(path.join(storage, 'meeting_m-garbage', 'package.zip'), 'not a zip at all');
  await putFile(path.join(storage, 'meeting_m-partonly', 'package.zip.part-deadbeef'), Buffer.alloc(4096));
  await putFile(path.join(storage, 'meeting_m-adopt', 'manifest.json.tmp-0f0f'), '{"half":');
  await writeFile(path.join(dir, 'node_config.json'), JSON.stringify(testConfig(m.port, QUIET)));

  const n = await startNode(m.port, { dir });
  defer(() => n.stop());

  // Start-up already happened: look before the first poll's downloads can change anything.
  const adopted = n.node.store.get('m-adopt');
  assert.ok(adopted, 'the complete package is adopted');
  assert.equal(adopted.source, 'adopted');
  assert.equal(adopted.sha256, sha256Hex(adoptBytes));
  assert.equal(adopted.size, adoptBytes.length);
  const corrupt = n.node.store.get('m-corrupt');
  assert.ok(
    corrupt === undefined || (corrupt.source === 'master' && corrupt.sha256 === masterSha(m.master, 'm-corrupt')),
    'a truncated zip is not adopted (only a fresh download from the master may be held)',
  );
  assert.equal(n.node.store.get('m-garbage'), undefined);
  assert.deepEqual((await meetingDirEntries(storage, 'm-adopt')).sort(), ['manifest.json', 'package.zip'], 'temp files removed');
  if ((await meetingDirEntries(storage, 'm-corrupt')).includes('package.zip')) {
    // Only possible if the fresh download already finished: then it must be the master's bytes.
    assert.equal(sha256Hex(await readFile(path.join(storage, 'meeting_m-corrupt', 'package.zip'))), masterSha(m.master, 'm-corrupt'));
  }
  assert.ok(!(await meetingDirEntries(storage, 'm-garbage')).includes('package.zip'), 'a file that is not a zip is deleted');
  assert.deepEqual(await meetingDirEntries(storage, 'm-partonly'), [], 'a folder holding only a temp file is cleared');
  const manifest = JSON.parse(await readFile(path.join(storage, 'meeting_m-adopt', 'manifest.json'), 'utf8')) as { sha256: string; size: number };
  assert.equal(manifest.sha256, sha256Hex(adoptBytes));
  assert.equal(manifest.size, adoptBytes.length);

  const served = await fetchRaw(packageUrl(n.url, 'm-adopt'));
  assert.equal(served.status, 200);
  assert.equal(served.headers.etag, `"${sha256Hex(adoptBytes)}"`);
  assert.deepEqual(served.body, adoptBytes);

  // The truncated one: a tablet gets the master's package (after the node fetched it), never the half.
  const fresh = await fetchRaw(packageUrl(n.url, 'm-corrupt'));
  assert.equal(fresh.status, 200);
  assert.equal(sha256Hex(fresh.body), masterSha(m.master, 'm-corrupt'));
  assert.equal(m.master.stats().packageDownloads['m-corrupt']?.started, 1);

  // The adopted package matches the master's bytes: comparing them must not replace it.
  await waitFor('the first poll\'s jobs to finish', () => n.node.sync.lastSuccess && n.node.jobs.inFlightIds().size === 0, 15_000);
  assert.equal(n.node.store.get('m-adopt')?.sha256, sha256Hex(adoptBytes));
  assert.deepEqual(await readFile(path.join(storage, 'meeting_m-adopt', 'package.zip')), adoptBytes);
});

test('adopted packages of meetings that are not active are removed only after a successful poll', async (t) => {
  const defer = cleanupStack(t);
  const dir = await tempDir();
  defer(() => removeDir(dir));
  const storage = path.join(dir, 'storage');
  const oldBytes = await someZip('m-old');
  await putFile(path.join(storage, 'meeting_m-old', 'package.zip'), oldBytes);

  // No master yet: its port is closed. The node starts, polls fail, and the storage is kept.
  const m = await startMaster();
  const port = m.port;
  await m.close();
  await writeFile(path.join(dir, 'node_config.json'), JSON.stringify(testConfig(port, QUIET)));
  const n = await startNode(port, { dir });
  defer(() => n.stop());
  await n.node.syncNow();
  await n.node.syncNow();
  assert.ok(n.node.sync.lastError, 'the polls failed');
  assert.equal(n.node.store.get('m-old')?.sha256, sha256Hex(oldBytes), 'kept while the master is unreachable');
  const served = await fetchRaw(packageUrl(n.url, 'm-old'));
  assert.equal(served.status, 200);
  assert.deepEqual(served.body, oldBytes);

  // The master answers (m-old is not active there): start-up cleanup happens now.
  const back = await startMasterOnPort(port);
  defer(() => back.close());
  await n.node.syncNow();
  assert.equal(n.node.sync.lastError, null);
  assert.equal(n.node.store.get('m-old'), undefined);
  assert.equal(existsSync(path.join(storage, 'meeting_m-old', 'package.zip')), false);
  assert.equal((await fetchRaw(packageUrl(n.url, 'm-old'))).status, 404);
});
