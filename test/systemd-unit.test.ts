/**
 * deploy/meeting-edge.service as systemd runs it (issue 19): the unit passes systemd-analyze
 * verify, and the node started inside the unit's address-family sandbox (RestrictAddressFamilies,
 * applied by a seccomp launcher built here, since systemd is not PID 1 on a test machine) runs; with
 * AF_NETLINK taken away it still runs and says in one line that it needs --host or publicIp.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildStartJs, cleanupStack, fetchRaw, freePort, REPO_ROOT, removeDir, tempDir, waitFor } from './helpers.ts';

const UNIT = path.join(REPO_ROOT, 'deploy', 'meeting-edge.service');

/** The value of a [Service] setting of the unit (the last one wins, as in systemd). */
async function unitSetting(key: string): Promise<string> {
  const lines = (await readFile(UNIT, 'utf8')).split('\n').filter((line) => line.startsWith(`${key}=`));
  assert.ok(lines.length > 0, `the unit sets ${key}`);
  return lines.at(-1)!.slice(key.length + 1).trim();
}

test('systemd-analyze verify accepts the unit without a warning', () => {
  const which = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' });
  assert.equal(which.status, 0, 'systemd-analyze is needed (Debian: apt-get install systemd)');
  const result = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  // verify exits 0 on an unknown key or an address family it cannot parse: it only warns.
  assert.equal(result.stderr.trim(), '', 'no warning');
});

describe('the node inside the unit\'s RestrictAddressFamilies', () => {
  let launcher = '';
  let startJs = '';
  let workDir = '';

  before(async () => {
    workDir = await tempDir('edge-unit-');
    launcher = path.join(workDir, 'restrict-address-families');
    const source = path.join(REPO_ROOT, 'test', 'fixtures', 'restrict-address-families.c');
    const compiled = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', source, '-o', launcher], { encoding: 'utf8' });
    assert.equal(compiled.status, 0, `the seccomp launcher needs a C compiler: ${compiled.stderr}`);
    startJs = await buildStartJs();
  });
  after(() => removeDir(workDir));

  /** start.js as the unit's ExecStart runs it (no --host), under the launcher with these families. */
  async function runNode(t: { after(fn: () => Promise<void>): void }, families: string) {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const config = path.join(dir, 'node_config.json');
    // A master nobody listens on (discard port) and no siblings: the node talks to no one.
    await writeFile(config, JSON.stringify({ mainServerIp: '127.0.0.1', mainServerPort: 9, peers: { enabled: false }, preheat: { enabled: false }, logging: { fileEnabled: false } }));
    const port = await freePort();
    const child = spawn(launcher, [families, process.execPath, startJs, '--config', config, '--port', String(port)], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    defer(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    await waitFor('the node listening', () => {
      if (child.exitCode !== null) throw new Error(`the node exited ${child.exitCode}: ${output}`);
      return output.includes('control panel:');
    }, 20_000);
    assert.equal((await fetchRaw(`http://127.0.0.1:${port}/healthz`)).status, 200);
    const linesAtStart = output;
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
    return linesAtStart.split('\n');
  }

  test('with the unit\'s families the node starts and lists its interfaces', async (t) => {
    const families = (await unitSetting('RestrictAddressFamilies')).split(/\s+/);
    assert.ok(families.includes('AF_NETLINK'), 'os.networkInterfaces() needs AF_NETLINK');
    const lines = await runNode(t, families.join(','));
    assert.ok(lines.some((line) => /address for tablets: \S+ \((first non-internal IPv4|no network interface found, loopback only)\)/.test(line)), lines.join('\n'));
    assert.ok(!lines.some((line) => line.includes('cannot list the network interfaces')), lines.join('\n'));
  });

  test('without AF_NETLINK the node still starts, and says in one line that it needs --host or publicIp', async (t) => {
    const families = (await unitSetting('RestrictAddressFamilies')).split(/\s+/).filter((family) => family !== 'AF_NETLINK');
    const lines = await runNode(t, families.join(','));
    const said = lines.filter((line) => line.includes('cannot list the network interfaces'));
    assert.equal(said.length, 1, lines.join('\n'));
    assert.match(said[0] ?? '', /Unknown system error 97.*registering 127\.0\.0\.1:\d+, which tablets cannot reach: start with --host ADDR, or set usePublicAddress and publicIp/);
    assert.ok(!lines.some((line) => line.includes('address for tablets: 127.0.0.1') && !line.includes('cannot list')), 'no second line about the address');
  });
});
