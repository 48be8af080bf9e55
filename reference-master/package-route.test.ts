// Package bodies: the aggregate rate shared by every download, and the byte and cut-short counters.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createReferenceMaster, type ReferenceMaster, type ReferenceMasterOptions } from './master.ts';

function download(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    }).on('error', reject);
  });
}

/** Reads the first bytes of the body, then closes the connection: a probe. */
function probe(url: string, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let got = 0;
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        got += chunk.length;
        if (got >= bytes) {
          req.destroy();
          resolve(Buffer.concat(chunks).subarray(0, bytes));
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ECONNRESET') reject(error);
    });
  });
}

async function withMaster(options: ReferenceMasterOptions, run: (master: ReferenceMaster, url: string) => Promise<void>): Promise<void> {
  const tempDir = await mkdtemp(join(tmpdir(), 'reference-package-route-test-'));
  const master = createReferenceMaster({ tempDir, chunkSize: 4096, ...options });
  try {
    const { url } = await master.listen();
    await run(master, url);
  } finally {
    await master.close();
    await rm(tempDir, { recursive: true, force: true });
  }
}

test('the aggregate cap is shared: two downloads at once take as long as their sum at the rate', () =>
  withMaster({ packageRateBytesPerSec: 1_000_000 }, async (master, url) => {
    master.addMeeting({ id: 'a', title: 'A', packageSizeBytes: 300_000 });
    master.addMeeting({ id: 'b', title: 'B', packageSizeBytes: 300_000 });
    await master.startMeeting('a');
    await master.startMeeting('b');
    const startedAt = performance.now();
    const bodies = await Promise.all(['a', 'b'].map((id) => download(`${url}/api/v1/meetings/${id}/download-package-direct`)));
    const elapsedMs = performance.now() - startedAt;
    const total = bodies.reduce((sum, body) => sum + body.length, 0);
    assert.equal(total, (master.meeting('a')?.package?.size ?? 0) + (master.meeting('b')?.package?.size ?? 0));
    // Each alone at the rate would need total/2; shared, the pair needs the whole total (less
    // the one chunk each that starts at once).
    const floorMs = ((total - 2 * 4096) / 1_000_000) * 1000;
    assert.ok(elapsedMs >= floorMs, `${elapsedMs.toFixed(0)} ms < ${floorMs.toFixed(0)} ms`);
  }));

test('counts bytes per build and requests cut short', () =>
  withMaster({ throttleBytesPerSec: 2_000_000 }, async (master, url) => {
    master.addMeeting({ id: 'a', title: 'A', packageSizeBytes: 2_000_000 });
    await master.startMeeting('a');
    const first = master.meeting('a')?.package;
    assert.ok(first);
    const direct = `${url}/api/v1/meetings/a/download-package-direct`;
    const whole = await download(direct);
    const head = await probe(direct, 64 * 1024);
    assert.deepEqual(head, whole.subarray(0, 64 * 1024));
    const giveUpAt = Date.now() + 5_000;
    while (master.stats().packageRequestsCutShort < 1 && Date.now() < giveUpAt) await sleep(10);
    const stats = master.stats();
    assert.equal(stats.packageRequestsCutShort, 1);
    assert.equal(stats.packageDownloads['a']?.aborted, 1);
    const sentForBuild = stats.packageBytesByBuild[first.buildId] ?? 0;
    assert.ok(sentForBuild >= whole.length + head.length && sentForBuild < 2 * whole.length, String(sentForBuild));
    assert.deepEqual(stats.packageBuilds.map((build) => [build.meetingId, build.buildId, build.reason]), [['a', first.buildId, 'start']]);

    await master.endMeeting('a');
    await master.startMeeting('a');
    const second = master.meeting('a')?.package;
    assert.ok(second && second.buildId !== first.buildId);
    const again = await download(direct);
    assert.equal(master.stats().packageBytesByBuild[second.buildId], again.length);
  }));
