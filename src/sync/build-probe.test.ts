import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createReferenceMaster, type ReferenceMaster } from '../../reference-master/master.ts';
import { MasterClient } from '../master/master-client.ts';
import { fileIdentity, LEAD_CAP_BYTES } from '../store/zip-lead.ts';
import { ProbeQueue, probeMasterBuild, type ProbeResult } from './build-probe.ts';

describe('probeMasterBuild against the reference master', () => {
  let master: ReferenceMaster;
  let client: MasterClient;
  let dir: string;

  before(async () => {
    master = createReferenceMaster({ chunkSize: 4096 });
    const { port } = await master.listen(0, '127.0.0.1');
    client = new MasterClient({ host: '127.0.0.1', port, connectTimeoutMs: 1_000, requestTimeoutMs: 5_000 });
    dir = await mkdtemp(path.join(tmpdir(), 'probe-'));
    master.addMeeting({ id: 'big', title: 'Big', packageSizeBytes: 4 * 1024 * 1024 });
    await master.startMeeting('big');
  });

  after(async () => {
    await client.close();
    await master.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function heldIdentity(): Promise<string> {
    const bytes = await (await fetch(`${master.url}/api/v1/meetings/big/download-package-direct`)).arrayBuffer();
    const file = path.join(dir, `held-${Date.now()}.zip`);
    await writeFile(file, Buffer.from(bytes));
    return (await fileIdentity(file)).buildId;
  }

  test('the same build: identified as the held one, reading at most 64 KiB of a 4 MiB package', async () => {
    const held = await heldIdentity();
    master.resetStats();
    const result = await probeMasterBuild(client, 'big', { timeoutMs: 5_000 });
    assert.equal(result.kind, 'identified');
    assert.ok(result.kind === 'identified' && result.identity.buildId === held);
    assert.ok(result.bytesRead <= LEAD_CAP_BYTES, `${result.bytesRead} bytes read`);
    // The master may have pushed more into the socket buffers than was read, but not the package.
    assert.ok(master.stats().packageBytesSent < 1024 * 1024, `master sent ${master.stats().packageBytesSent}`);
  });

  test('a new build (the meeting restarted): a different identity', async () => {
    const before = await heldIdentity();
    await master.endMeeting('big');
    await master.startMeeting('big');
    const result = await probeMasterBuild(client, 'big', { timeoutMs: 5_000 });
    assert.ok(result.kind === 'identified');
    assert.notEqual(result.identity.buildId, before);
    assert.equal(result.identity.buildId, await heldIdentity());
  });

  test('a master that closes early or stalls: unknown, never a made-up identity', async () => {
    master.setFault('package', { kind: 'cutChunked', afterBytes: 20, times: 1 });
    const cut = await probeMasterBuild(client, 'big', { timeoutMs: 5_000 });
    assert.equal(cut.kind, 'unknown');

    master.setFault('package', { kind: 'stallBody', afterBytes: 20, times: 1 });
    const stalled = await probeMasterBuild(client, 'big', { timeoutMs: 500 });
    assert.equal(stalled.kind, 'unknown');
    assert.match(stalled.kind === 'unknown' ? stalled.reason : '', /in time/);

    master.setFault('package', { kind: 'status', code: 500, times: 1 });
    assert.equal((await probeMasterBuild(client, 'big', { timeoutMs: 5_000 })).kind, 'unknown');
  });
});

describe('ProbeQueue', () => {
  test('runs probes one at a time and joins a second ask for the same meeting', async () => {
    const queue = new ProbeQueue();
    let running = 0;
    let most = 0;
    let calls = 0;
    const probe = async (): Promise<ProbeResult> => {
      calls++;
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, 20));
      running--;
      return { kind: 'unknown', reason: 'test', bytesRead: 0 };
    };
    const results = await Promise.all([queue.run('a', probe), queue.run('b', probe), queue.run('a', probe), queue.run('c', probe)]);
    assert.equal(results.length, 4);
    assert.equal(most, 1, 'never two probes at once');
    assert.equal(calls, 3, 'the second ask for a joined the first');
    assert.deepEqual([...queue.pendingIds()], []);
  });

  test('an urgent ask (a tablet waits) runs before the probes already waiting, after the one running', async () => {
    const queue = new ProbeQueue();
    const order: string[] = [];
    let release!: () => void;
    const first = new Promise<void>((resolve) => {
      release = resolve;
    });
    const probe = (id: string) => async (): Promise<ProbeResult> => {
      order.push(id);
      if (id === 'a') await first;
      return { kind: 'unknown', reason: id, bytesRead: 0 };
    };
    const all = [queue.run('a', probe('a')), queue.run('b', probe('b')), queue.run('c', probe('c')), queue.run('d', probe('d'))];
    // 'c' is already waiting: asked again urgently, it moves ahead of 'b'; 'e' is new and urgent.
    all.push(queue.run('c', probe('c'), { urgent: true }), queue.run('e', probe('e'), { urgent: true }));
    release();
    await Promise.all(all);
    assert.deepEqual(order, ['a', 'e', 'c', 'b', 'd']);
  });

  test('an ask made on hearing an answer starts a new probe', async () => {
    const queue = new ProbeQueue();
    let calls = 0;
    const probe = async (): Promise<ProbeResult> => ({ kind: 'unknown', reason: String(++calls), bytesRead: 0 });
    const again = await queue.run('a', probe).then(() => queue.run('a', probe));
    assert.equal(calls, 2);
    assert.equal(again.kind === 'unknown' && again.reason, '2');
  });
});
