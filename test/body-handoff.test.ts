/**
 * A node whose package bodies are handed to the addon's event-loop transfers (src/http/body-handoff.ts):
 * the serving figures and the access log still see every byte, and a stop neither hangs on nor
 * leaks a transfer a slow tablet holds open.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { loadBodyHandOff } from '../src/http/body-handoff.ts';
import { cleanupStack, descriptorsOn, fetchRaw, packageUrl, removeDir, startMaster, startNode, startPausedDownload, waitFor } from './helpers.ts';

const built = loadBodyHandOff().handOff !== null;
/** Larger than loopback's socket buffers, so a paused tablet holds its transfer mid-body. */
const SIZE = 24_000_000;

test('a handed-off download is counted and logged with its bytes; a stop cuts a slow one in time and releases the package', { skip: built ? false : 'edge-net addon not built', timeout: 60_000 }, async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'hand1', title: 'Hand-off', packageSizeBytes: SIZE });
  await m.master.startMeeting('hand1');
  const n = await startNode(m.port, { node: { policy: { drainTimeoutMs: 500 } } });
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await n.node.syncNow();
  await waitFor('synced', () => n.node.sync.isServable('hand1'));
  const file = path.join(n.storageDir, 'meeting_hand1', 'package.zip');

  const full = await fetchRaw(packageUrl(n.url, 'hand1'));
  assert.equal(full.status, 200);
  assert.equal(full.headers.connection, 'close', 'handed off: the connection ends with the body');
  const size = Number(full.headers['content-length']);
  assert.equal(full.body.length, size);
  await waitFor('the download logged', () => n.logger.fields.some((f) => f.event === 'download'));
  const first = n.logger.fields.find((f) => f.event === 'download');
  assert.deepEqual([first?.status, first?.bytes, first?.outcome], [200, size, 'complete']);
  assert.equal(n.node.stats.get('hand1').bytesServed, size);
  assert.equal(n.node.stats.activeDownloads, 0);

  // A tablet reading slowly: its transfer runs in the addon when the node stops.
  const slow = await startPausedDownload(packageUrl(n.url, 'hand1'));
  assert.equal(slow.status, 200);
  await waitFor('the slow download counted', () => n.node.stats.activeDownloads === 1);
  assert.equal(descriptorsOn(file), 1, 'one shared package descriptor while it runs');
  await n.stop();
  const cut = await waitFor('the cut download logged', () => n.logger.fields.filter((f) => f.event === 'download')[1]);
  assert.equal(cut.outcome, 'aborted');
  assert.ok(typeof cut.bytes === 'number' && cut.bytes > 0 && cut.bytes < size, JSON.stringify(cut));
  assert.equal(n.node.stats.get('hand1').bytesServed, size + cut.bytes, 'every byte the kernel took is counted once');
  assert.equal(descriptorsOn(file), 0, 'the package descriptor is given back');
  slow.resume();
  const body = await slow.done;
  assert.equal(body.complete, false, 'the tablet sees a cut body, never a short complete one');
});

test('a tablet killing its connection mid-body: the download is logged cut with the bytes the kernel took, the package released, the node serving on', { skip: built ? false : 'edge-net addon not built', timeout: 60_000 }, async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'kill1', title: 'Killed', packageSizeBytes: SIZE });
  await m.master.startMeeting('kill1');
  const n = await startNode(m.port);
  defer(() => removeDir(n.dir));
  defer(() => n.stop());
  await n.node.syncNow();
  await waitFor('synced', () => n.node.sync.isServable('kill1'));
  const file = path.join(n.storageDir, 'meeting_kill1', 'package.zip');

  const url = new URL(packageUrl(n.url, 'kill1'));
  const tablet = net.connect(Number(url.port), url.hostname);
  tablet.on('error', () => {});
  let received = 0;
  tablet.on('data', (chunk: Buffer) => {
    received += chunk.length;
    // Gone once the body is under way, its transfer held mid-body by the full socket.
    if (received > 1024 * 1024) tablet.destroy();
  });
  tablet.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
  await new Promise((resolve) => tablet.on('close', resolve));

  const cut = await waitFor('the cut download logged', () => n.logger.fields.find((f) => f.event === 'download'));
  assert.equal(cut.outcome, 'aborted');
  assert.ok(typeof cut.bytes === 'number' && cut.bytes > 0 && cut.bytes < SIZE, JSON.stringify(cut));
  assert.equal(n.node.stats.get('kill1').bytesServed, cut.bytes, 'the bytes the kernel took are counted, once');
  assert.equal(n.node.stats.activeDownloads, 0);
  await waitFor('the package descriptor given back', () => descriptorsOn(file) === 0);

  const next = await fetchRaw(packageUrl(n.url, 'kill1'));
  assert.equal(next.status, 200);
  assert.equal(next.body.length, Number(next.headers['content-length']), 'the next tablet gets the whole package');
});
