import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { HashThread, InlineSha256 } from './hash-thread.ts';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

test('hashes on the worker equal node:crypto, for concurrent streams and odd chunk sizes', async (t) => {
  const thread = new HashThread();
  t.after(() => thread.close());
  const a = randomBytes(3 * 1024 * 1024 + 17);
  const b = randomBytes(100_001);
  const ha = thread.create();
  const hb = thread.create();
  // Interleaved, in chunks that straddle the 1 MiB batches; the caller reuses its buffer at once.
  const scratch = Buffer.alloc(70_000);
  for (let offset = 0; offset < Math.max(a.length, b.length); offset += scratch.length) {
    for (const [data, hash] of [
      [a, ha],
      [b, hb],
    ] as const) {
      if (offset >= data.length) continue;
      const n = data.copy(scratch, 0, offset, Math.min(data.length, offset + scratch.length));
      hash.update(scratch.subarray(0, n));
      scratch.fill(0xee);
    }
  }
  assert.equal(await ha.digest(), sha256(a));
  assert.equal(await hb.digest(), sha256(b));
  // Empty input, too.
  assert.equal(await thread.create().digest(), sha256(Buffer.alloc(0)));
});

test('backlog and drained(): the bytes not yet hashed are counted and can be waited for', async (t) => {
  const thread = new HashThread();
  t.after(() => thread.close());
  const hash = thread.create();
  hash.update(randomBytes(5 * 1024 * 1024));
  assert.ok(hash.backlog > 0, 'handed over, not hashed yet');
  await hash.drained(0);
  assert.equal(hash.backlog, 0);
  hash.update(Buffer.from('tail'));
  assert.equal(hash.backlog, 4, 'a partial batch waits for more bytes...');
  await hash.drained(0); // ...or is sent when someone waits for it
  assert.equal(hash.backlog, 0);
  await hash.digest();
});

test('a given-up hash is forgotten; a closed thread fails what is running and hashes inline after', async () => {
  const thread = new HashThread();
  const dropped = thread.create();
  dropped.update(randomBytes(2 * 1024 * 1024));
  dropped.dispose();
  const running = thread.create();
  running.update(randomBytes(1024 * 1024));
  // Either it finished before the close, or it failed: never a wrong value.
  const outcome = running.digest().then(
    (hex) => hex,
    (error: Error) => error.message,
  );
  await thread.close();
  const settled = await outcome;
  assert.ok(settled === 'hash thread closed' || /^[0-9a-f]{64}$/.test(settled), settled);
  const after = thread.create();
  assert.ok(after instanceof InlineSha256);
  after.update(Buffer.from('x'));
  assert.equal(await after.digest(), sha256(Buffer.from('x')));
});
