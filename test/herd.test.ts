/**
 * The moment that matters: a meeting starts and every tablet in the room asks the node at once,
 * while the master is still slowly sending the package. One upstream fetch, right bytes for all.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupStack, fetchRaw, masterSha, packageUrl, removeDir, sha256Hex, startMaster, startNode, type RawResponse } from './helpers.ts';

const TABLETS = 300;

/** A tablet: asks until it gets a complete 200 (404 before the node knows the meeting, 503, cut). */
async function tablet(url: string, deadline: number): Promise<RawResponse & { attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    const res = await fetchRaw(url).catch(() => null);
    if ((res && res.status === 200 && res.complete) || Date.now() > deadline) {
      return { ...(res ?? { status: 0, headers: {}, body: Buffer.alloc(0), complete: false }), attempts };
    }
    await sleep(50);
  }
}

test(`${TABLETS} tablets the instant the meeting starts, master streaming slowly: one upstream fetch, every tablet the right bytes`, async (t) => {
  const defer = cleanupStack(t);
  // No token change during the test: it would make the node re-fetch the package to check it.
  const m = await startMaster({ throttleBytesPerSec: 500_000, chunkSize: 16 * 1024, tokenCheckIntervalMs: 3_600_000, tokenMaxWaitMs: 3_600_000 });
  defer(() => m.close());
  const n = await startNode(m.port, { config: { syncInterval: 3600, heartbeat: { interval: 300 } } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await n.node.syncNow();

  m.master.addMeeting({ id: 'herd', title: 'All hands 全体会议', packageSizeBytes: 1_000_000 });
  await m.master.startMeeting('herd');
  // Nobody told the node yet: the first tablets' 404s make it look (one poll for all of them).
  const deadline = Date.now() + 60_000;
  const results = await Promise.all(Array.from({ length: TABLETS }, () => tablet(packageUrl(n.url, 'herd'), deadline)));

  const expectedSha = masterSha(m.master, 'herd');
  const wrong = results.filter((r) => r.status !== 200 || !r.complete || sha256Hex(r.body) !== expectedSha);
  assert.equal(wrong.length, 0, `${wrong.length} tablets without the right bytes (statuses ${[...new Set(wrong.map((r) => r.status))].join(', ')})`);
  assert.equal(m.master.stats().packageDownloads['herd']?.started, 1, 'exactly one download from the master');
});
