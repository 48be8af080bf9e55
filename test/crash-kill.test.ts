/**
 * Crash safety under SIGKILL at random moments of a sync, many times in one run: the node runs as
 * a child process (scripts/lib/run-node.ts, bundled once, each process loaded while the one before
 * runs) against a throttled master and is killed when its temp file reaches a random byte offset,
 * or a random moment after the last byte (the fsync / manifest / rename window). After every kill
 * and restart:
 *   - a package.zip on disk is always a complete version the master served (never partial);
 *   - once the node has opened its storage, manifest.json and package.zip agree (sha256, size);
 *   - the leftover temp file is gone and nothing but a complete version is served;
 * and at the end the sync completes. EDGE_CRASH_SEED=<n> replays a run.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import {
  bundleRunNode,
  cleanupStack,
  fetchRaw,
  isPartFile,
  loadNodeProcess,
  meetingDirEntries,
  packageUrl,
  removeDir,
  killProcess,
  startMaster,
  tempDir,
  testConfig,
  waitFor,
  type NodeProcess,
} from './helpers.ts';

const KILLS = 50;
const MEETING = 'm-crash';
const PACKAGE_BYTES = 600_000;
const THROTTLE = 2_000_000;

/** mulberry32: a small seeded PRNG so a failing sequence of kill points can be replayed. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface DiskState {
  packageSha: string | null;
  packageSize: number | null;
  packageIno: number | null;
  manifest: { sha256: string; size: number; inode: number } | null;
  parts: Array<{ name: string; size: number }>;
}

/**
 * The sha256 of each file version read so far, by inode, size and change time: the waits poll the
 * disk every 2 ms, and hashing an unchanged package.zip each time kept a core busy. A file
 * replaced (rename) or written to gets a new key and is read again.
 */
type HashCache = Map<string, string>;

async function diskState(storageDir: string, hashes: HashCache): Promise<DiskState> {
  const dir = path.join(storageDir, `meeting_${MEETING}`);
  const state: DiskState = { packageSha: null, packageSize: null, packageIno: null, manifest: null, parts: [] };
  for (const name of await meetingDirEntries(storageDir, MEETING)) {
    if (!isPartFile(name)) continue;
    try {
      state.parts.push({ name, size: (await stat(path.join(dir, name))).size });
    } catch {
      // Removed or renamed between the listing and the stat.
    }
  }
  try {
    // One open file for the identity and the bytes: a rename in between cannot mix two versions.
    const file = await open(path.join(dir, 'package.zip'));
    try {
      const info = await file.stat({ bigint: true });
      const key = `${info.ino}:${info.size}:${info.ctimeNs}:${info.mtimeNs}`;
      let sha = hashes.get(key);
      if (sha === undefined) {
        sha = createHash('sha256').update(await file.readFile()).digest('hex');
        hashes.set(key, sha);
      }
      state.packageSha = sha;
      state.packageSize = Number(info.size);
      state.packageIno = Number(info.ino);
    } finally {
      await file.close();
    }
  } catch {
    // No package yet.
  }
  try {
    state.manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as DiskState['manifest'];
  } catch {
    // No manifest yet.
  }
  return state;
}


test(`SIGKILL at ${KILLS} random moments of a sync: never a partial package, manifest and package agree, the sync completes`, { timeout: 300_000 }, async (t) => {
  const seed = Number(process.env.EDGE_CRASH_SEED ?? Date.now() % 1_000_000);
  const random = seededRandom(seed);
  t.diagnostic(`seed ${seed} (EDGE_CRASH_SEED=${seed} replays this run)`);
  const defer = cleanupStack(t);
  // tokenMaxWaitMs: a restarted meeting gets a new token quickly, which is what makes the
  // restarted node fetch the new bytes.
  const m = await startMaster({ throttleBytesPerSec: THROTTLE, tokenMaxWaitMs: 300 });
  defer(() => m.close());
  m.master.addMeeting({ id: MEETING, title: 'Crash test', packageSizeBytes: PACKAGE_BYTES });
  await m.master.startMeeting(MEETING);
  /** Every version the master ever served: a package on disk must be one of them, whole. */
  const versions = new Set<string>([m.master.meeting(MEETING)!.package!.sha256]);

  const dir = await tempDir('edge-crash-');
  defer(() => removeDir(dir));
  const configPath = path.join(dir, 'node_config.json');
  // A long poll interval: each run syncs from its first poll, at start.
  await writeFile(configPath, JSON.stringify(testConfig(m.port, { syncInterval: 3600, heartbeat: { interval: 300 } }), null, 2));
  const storageDir = path.join(dir, 'storage');
  const hashes: HashCache = new Map();
  const program = await bundleRunNode();
  defer(() => program.remove());
  let next = loadNodeProcess(configPath, program);
  defer(() => next.kill());

  const outcomes = { midDownload: 0, afterLastByte: 0, afterPromote: 0, restartsOfMeeting: 0 };
  let kills = 0;
  let previousParts: string[] = [];
  while (kills < KILLS) {
    const current = m.master.meeting(MEETING)!.package!.sha256;
    const before = await diskState(storageDir, hashes);
    if (before.packageSha === current) {
      // The last run finished the sync: give the master new bytes so the next run has one to do.
      const token = m.master.token();
      await m.master.endMeeting(MEETING);
      await m.master.startMeeting(MEETING);
      versions.add(m.master.meeting(MEETING)!.package!.sha256);
      await waitFor('the master\'s token to change', () => m.master.token() !== token, 10_000, 10);
      outcomes.restartsOfMeeting++;
    }
    const { sha256: target, size } = m.master.meeting(MEETING)!.package!;

    const proc = await next.start();
    defer(() => killProcess(proc));
    next = loadNodeProcess(configPath, program);
    // The store scan ran before READY; the first download needs > 100 ms of throttled bytes, so no
    // promote can be under way while this looks.
    const atStart = await diskState(storageDir, hashes);
    for (const name of previousParts) {
      assert.ok(!atStart.parts.some((p) => p.name === name), `kill ${kills}: the killed run's temp file ${name} was removed at start`);
    }
    if (atStart.packageSha !== null) {
      assert.ok(versions.has(atStart.packageSha), `kill ${kills}: package.zip is a complete version (seed ${seed})`);
      assert.ok(atStart.manifest, `kill ${kills}: a package.zip has a manifest after start`);
      assert.equal(atStart.manifest.sha256, atStart.packageSha, `kill ${kills}: manifest sha256 = package sha256 (seed ${seed})`);
      assert.equal(atStart.manifest.size, atStart.packageSize, `kill ${kills}: manifest size = package size`);
      assert.equal(atStart.manifest.inode, atStart.packageIno, `kill ${kills}: manifest names package.zip's inode`);
    }

    // A tablet asking meanwhile: a complete version or no body at all (the kill may cut it).
    const tablet = fetchRaw(packageUrl(proc.url, MEETING)).catch(() => null);

    // Most kills land in the download; some just after its last byte (fsync, manifest, rename);
    // some just after the promote (folder fsync, heartbeat), which also makes the next rounds
    // replace an existing package.zip.
    const moment = random();
    const offset = moment < 0.7 ? Math.floor((moment / 0.7) * size) : size;
    const killedAt = await waitFor(
      `kill ${kills}: the sync to reach byte ${offset}`,
      async () => {
        const now = await diskState(storageDir, hashes);
        if (now.packageSha === target) {
          await sleep(random() * 20);
          return 'afterPromote' as const;
        }
        const part = now.parts[0];
        if (moment < 0.85 && part && part.size >= offset) {
          if (offset < size) return 'midDownload' as const;
          await sleep(random() * 15);
          return 'afterLastByte' as const;
        }
        return null;
      },
      20_000,
      2,
    );
    proc.child.kill('SIGKILL');
    const exit = await proc.exited;
    assert.equal(exit.signal, 'SIGKILL', `kill ${kills}: the node died of SIGKILL`);
    outcomes[killedAt]++;
    kills++;

    const served = await tablet;
    if (served && served.status === 200 && served.complete) {
      const sha = createHash('sha256').update(served.body).digest('hex');
      assert.ok(versions.has(sha), `kill ${kills}: a complete response is a complete version`);
      if (served.headers.etag !== undefined) {
        assert.equal(served.headers.etag, `"${sha}"`, `kill ${kills}: the body is the version its ETag names`);
      } else {
        // Served while downloading: the headers left before the size and hash were known.
        assert.equal(served.headers['content-length'], undefined, `kill ${kills}: only a streamed response lacks an ETag`);
      }
    }

    const after = await diskState(storageDir, hashes);
    if (after.packageSha !== null) {
      assert.ok(versions.has(after.packageSha), `kill ${kills}: package.zip after the kill is complete (seed ${seed})`);
      // A kill between the manifest and the rename leaves a manifest naming the temp file's
      // inode; start-up re-verifies then. A manifest naming package.zip must describe it.
      if (after.manifest && after.manifest.inode === after.packageIno) {
        assert.equal(after.manifest.sha256, after.packageSha, `kill ${kills}: manifest agrees with the package it names`);
      }
    }
    previousParts = after.parts.map((p) => p.name);
  }
  t.diagnostic(`kill points: ${JSON.stringify(outcomes)}`);
  assert.ok(outcomes.midDownload > 0, 'some kills hit the download itself');
  assert.ok(outcomes.restartsOfMeeting > 0, 'some rounds replaced a package already held');

  // The last run is left alone: it completes the sync.
  const target = m.master.meeting(MEETING)!.package!.sha256;
  const proc = await next.start();
  defer(() => killProcess(proc));
  await waitFor(
    'the sync to complete',
    async () => (await diskState(storageDir, hashes)).packageSha === target,
    30_000,
    50,
  );
  const final = await waitFor(
    'the node to serve the current version',
    async () => {
      const res = await fetchRaw(packageUrl(proc.url, MEETING));
      return res.status === 200 && createHash('sha256').update(res.body).digest('hex') === target ? res : null;
    },
    10_000,
    50,
  );
  assert.equal(final.headers.etag, `"${target}"`);
  const end = await diskState(storageDir, hashes);
  assert.equal(end.manifest?.sha256, target);
  assert.equal(end.manifest?.size, end.packageSize);
  assert.equal(end.manifest?.inode, end.packageIno);
  await waitFor('no temp file left', async () => (await diskState(storageDir, hashes)).parts.length === 0, 10_000);
});
