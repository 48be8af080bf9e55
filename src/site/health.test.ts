import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import { HealthWindow, SiteHealth, type HealthTransport } from './health.ts';
import { healthMessage, newSiteKey, SiteKeyring } from './site-key.ts';

test('the window: one answer makes a new member healthy; sick after 3 misses of the last 5; healthy again after 3 answers', () => {
  const w = new HealthWindow({ window: 5, threshold: 3 });
  assert.equal(w.healthy, false, 'not before it answered');
  w.record(true);
  assert.equal(w.healthy, true);
  w.record(false);
  w.record(false);
  assert.equal(w.healthy, true, 'two misses: still healthy');
  w.record(false);
  assert.equal(w.healthy, false, 'three misses of the last five: sick');
  w.record(true);
  w.record(true);
  assert.equal(w.healthy, false, 'two answers are not enough');
  w.record(true);
  assert.equal(w.healthy, true, 'three answers: healthy');
  w.fail();
  assert.equal(w.healthy, false, 'found dead: sick at once');
  w.record(true);
  w.record(true);
  assert.equal(w.healthy, false);
  w.record(true);
  assert.equal(w.healthy, true);
});

/** Members answering as the test says: a keyring signs their proofs, or they answer nothing (reject). */
function site(answers: Map<string, SiteKeyring | 'silent' | 'no-proof'>, ours: SiteKeyring) {
  const asked: string[] = [];
  const transport: HealthTransport = async (address, nonce) => {
    asked.push(address);
    const answer = answers.get(address);
    if (answer === undefined || answer === 'silent') throw new Error('timed out');
    if (answer === 'no-proof') return { proof: null };
    return { proof: answer.sign(healthMessage(nonce, address)) };
  };
  const logger = new MemoryLogger();
  const health = new SiteHealth({ transport, keyring: () => ours, members: () => [...answers.keys()], logger });
  return { health, logger, asked };
}

test('a member that proves the key is usable; one without it is "not of this site", logged once at WARN; a silent one is never usable', async () => {
  const key = new SiteKeyring(newSiteKey());
  const answers = new Map<string, SiteKeyring | 'silent' | 'no-proof'>([
    ['127.0.0.1:1', key],
    ['127.0.0.1:2', 'no-proof'],
    ['127.0.0.1:3', new SiteKeyring(newSiteKey())],
    ['127.0.0.1:4', 'silent'],
  ]);
  const { health, logger } = site(answers, key);
  await health.probeAll();
  await health.probeAll();
  assert.equal(health.usable('127.0.0.1:1'), true);
  assert.equal(health.usable('127.0.0.1:2'), false);
  assert.equal(health.usable('127.0.0.1:3'), false);
  assert.equal(health.usable('127.0.0.1:4'), false);
  const view = new Map(health.view().map((m) => [m.address, m]));
  assert.equal(view.get('127.0.0.1:2')?.proof, 'refused');
  assert.equal(view.get('127.0.0.1:3')?.proof, 'refused');
  assert.equal(view.get('127.0.0.1:4')?.proof, 'unknown');
  const warnings = logger.lines.filter((line) => /not of this site/.test(line));
  assert.equal(warnings.length, 2, 'each stranger logged once, not once per probe');
  assert.ok(warnings.every((line) => /WARN/i.test(line)));
});

test('a proof relayed from another member\'s answer does not count: it is bound to the prover\'s own address', async () => {
  const key = new SiteKeyring(newSiteKey());
  const logger = new MemoryLogger();
  // The rogue at :2 forwards the nonce to the real member at :1 and relays its proof.
  const transport: HealthTransport = async (_address, nonce) => ({ proof: key.sign(healthMessage(nonce, '127.0.0.1:1')) });
  const health = new SiteHealth({ transport, keyring: () => key, members: () => ['127.0.0.1:2'], logger });
  await health.probeAll();
  assert.equal(health.usable('127.0.0.1:2'), false);
});

test('a member that goes silent is sick after 3 misses of 5; markSick makes it sick at once; probes join one in flight', async () => {
  const key = new SiteKeyring(newSiteKey());
  const answers = new Map<string, SiteKeyring | 'silent' | 'no-proof'>([['127.0.0.1:1', key]]);
  const { health, asked } = site(answers, key);
  await health.probeAll();
  assert.equal(health.usable('127.0.0.1:1'), true);
  answers.set('127.0.0.1:1', 'silent');
  await health.probeAll();
  await health.probeAll();
  assert.equal(health.usable('127.0.0.1:1'), true, 'two misses');
  await health.probeAll();
  assert.equal(health.usable('127.0.0.1:1'), false, 'three misses');
  answers.set('127.0.0.1:1', key);
  for (let i = 0; i < 3; i++) await health.probeAll();
  assert.equal(health.usable('127.0.0.1:1'), true, 'back after three answers');
  health.markSick('127.0.0.1:1', 'stalled');
  assert.equal(health.usable('127.0.0.1:1'), false);
  const count = asked.length;
  await Promise.all([health.probe('127.0.0.1:1'), health.probe('127.0.0.1:1')]);
  assert.equal(asked.length, count + 1, 'two asks, one probe');
});
