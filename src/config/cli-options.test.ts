import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseCliOptions, readEnvironment, USAGE } from './cli-options.ts';

describe('readEnvironment: the EDGE_* switches without a flag', () => {
  test('nothing set: no token override, zero copy and burst accept on', () => {
    assert.deepEqual(readEnvironment({}), { zeroCopy: true, burstAccept: true, bodyHandOff: true });
  });

  test('EDGE_ZERO_COPY=0, EDGE_BURST_ACCEPT=0 and EDGE_BODY_HANDOFF=0 switch those off; other values leave them on', () => {
    assert.deepEqual(readEnvironment({ EDGE_ZERO_COPY: '0', EDGE_BURST_ACCEPT: '0', EDGE_BODY_HANDOFF: '0' }), { zeroCopy: false, burstAccept: false, bodyHandOff: false });
    assert.deepEqual(readEnvironment({ EDGE_ZERO_COPY: '1', EDGE_BURST_ACCEPT: 'no', EDGE_BODY_HANDOFF: '1' }), { zeroCopy: true, burstAccept: true, bodyHandOff: true });
  });

  test('EDGE_ADMIN_TOKEN is trimmed; blank means unset', () => {
    assert.equal(readEnvironment({ EDGE_ADMIN_TOKEN: '  env-token-0123456789abc \n' }).adminToken, 'env-token-0123456789abc');
    assert.equal('adminToken' in readEnvironment({ EDGE_ADMIN_TOKEN: '   ' }), false);
  });

  test('EDGE_SITE_KEY is trimmed; blank means unset', () => {
    const key = 'A'.repeat(43) + '=';
    assert.equal(readEnvironment({ EDGE_SITE_KEY: ` ${key}\n` }).siteKey, key);
    assert.equal('siteKey' in readEnvironment({ EDGE_SITE_KEY: '  ' }), false);
  });

  test('--new-site-key is reported only when given', () => {
    assert.equal(parseCliOptions(['--new-site-key'], {}).newSiteKey, true);
    assert.equal('newSiteKey' in parseCliOptions([], {}), false);
  });

  test('the usage lists every variable this module reads', () => {
    for (const name of ['EDGE_PORT', 'EDGE_HOST', 'EDGE_CONFIG', 'EDGE_ADMIN_TOKEN', 'EDGE_SITE_KEY', 'EDGE_ZERO_COPY', 'EDGE_BURST_ACCEPT', 'EDGE_BODY_HANDOFF', '--new-site-key']) {
      assert.ok(USAGE.includes(name), name);
    }
  });
});

test('no module under src/ reads process.env: start.ts hands it to this module', () => {
  const src = path.resolve(import.meta.dirname, '..');
  const readers = (readdirSync(src, { recursive: true }) as string[])
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.test.ts'))
    .filter((file) => /process\.env\b/.test(readFileSync(path.join(src, file), 'utf8')));
  assert.deepEqual(readers, []);
});

describe('--version', () => {
  test('is reported only when given (long and short form)', () => {
    assert.equal(parseCliOptions(['--version'], {}).version, true);
    assert.equal(parseCliOptions(['-v'], {}).version, true);
    assert.equal('version' in parseCliOptions([], {}), false);
  });
});

test('the port says which start option set it (the flag wins over EDGE_PORT); none when the file decides', () => {
  assert.deepEqual([parseCliOptions(['--port', '8002'], { EDGE_PORT: '8003' })].map((o) => [o.port, o.portSource]), [[8002, '--port']]);
  assert.deepEqual([parseCliOptions([], { EDGE_PORT: '8003' })].map((o) => [o.port, o.portSource]), [[8003, 'EDGE_PORT']]);
  const fromFile = parseCliOptions([], {});
  assert.equal(fromFile.port, undefined);
  assert.equal(fromFile.portSource, undefined);
});
