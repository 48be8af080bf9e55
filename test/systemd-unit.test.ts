/**
 * deploy/meeting-edge.service as systemd runs it (issue 19): the unit passes systemd-analyze
 * verify, and the node started inside the unit's address-family sandbox (RestrictAddressFamilies,
 * applied by a seccomp launcher built here, since systemd is not PID 1 on a test machine) runs; with
 * AF_NETLINK taken away it still runs and says in one line that it needs --host or publicIp. Inside
 * the unit's ProtectSystem=strict + ReadWritePaths (a read-only mount namespace) it writes its lock,
 * config and log, and a storage folder left out of ReadWritePaths is refused.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
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

  /**
   * start.js as the unit's ExecStart runs it (no --host), under the launcher with these families;
   * with `layout`, also inside the unit's ProtectSystem=strict: a private mount namespace where
   * everything is read-only but the `writable` folders (its ReadWritePaths).
   */
  async function runNode(
    t: { after(fn: () => Promise<void>): void },
    families: string,
    layout?: { config: string; settings: Record<string, unknown>; writable: string[] },
  ) {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const config = layout?.config ?? path.join(dir, 'node_config.json');
    // A master nobody listens on (discard port) and no siblings: the node talks to no one.
    const base = { mainServerIp: '127.0.0.1', mainServerPort: 9, peers: { enabled: false }, preheat: { enabled: false }, logging: { fileEnabled: false } };
    await writeFile(config, JSON.stringify({ ...base, ...layout?.settings }));
    const port = await freePort();
    const node = [launcher, families, process.execPath, startJs, '--config', config, '--port', String(port)];
    const command = layout ? protectSystem(layout.writable, node) : node;
    const child = spawn(command[0]!, command.slice(1), {
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
    const started = await waitFor('the node listening or exiting', () => {
      if (child.exitCode !== null) return 'exited';
      return output.includes('control panel:') ? 'listening' : null;
    }, 20_000);
    if (started === 'exited') return { code: child.exitCode, lines: output.trim().split('\n') };
    assert.equal((await fetchRaw(`http://127.0.0.1:${port}/healthz`)).status, 200);
    const linesAtStart = output;
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
    return { code: null, lines: linesAtStart.split('\n') };
  }

  test('with the unit\'s families the node starts and lists its interfaces', async (t) => {
    const families = (await unitSetting('RestrictAddressFamilies')).split(/\s+/);
    assert.ok(families.includes('AF_NETLINK'), 'os.networkInterfaces() needs AF_NETLINK');
    const { code, lines } = await runNode(t, families.join(','));
    assert.equal(code, null, lines.join('\n'));
    assert.ok(lines.some((line) => /address for tablets: \S+ \((first non-internal IPv4|no network interface found, loopback only)\)/.test(line)), lines.join('\n'));
    assert.ok(!lines.some((line) => line.includes('cannot list the network interfaces')), lines.join('\n'));
  });

  test('without AF_NETLINK the node still starts, and says in one line that it needs --host or publicIp', async (t) => {
    const families = (await unitSetting('RestrictAddressFamilies')).split(/\s+/).filter((family) => family !== 'AF_NETLINK');
    const { code, lines } = await runNode(t, families.join(','));
    assert.equal(code, null, lines.join('\n'));
    const said = lines.filter((line) => line.includes('cannot list the network interfaces'));
    assert.equal(said.length, 1, lines.join('\n'));
    assert.match(said[0] ?? '', /Unknown system error 97.*registering 127\.0\.0\.1:\d+, which tablets cannot reach: start with --host ADDR, or set usePublicAddress and publicIp/);
    assert.ok(!lines.some((line) => line.includes('address for tablets: 127.0.0.1') && !line.includes('cannot list')), 'no second line about the address');
  });

  test('inside the unit\'s ProtectSystem=strict with its ReadWritePaths: the node writes its lock, config and log there and nowhere else', async (t) => {
    const writable = (await unitSetting('ReadWritePaths')).split(/\s+/);
    assert.deepEqual(writable, ['/var/lib/meeting-edge', '/var/log/meeting-edge', '/etc/meeting-edge'], 'storage, logs, config (as the README installs them)');
    assert.equal(await unitSetting('ProtectSystem'), 'strict');
    const families = (await unitSetting('RestrictAddressFamilies')).split(/\s+/).join(',');
    // The unit's three folders, as temp folders.
    const root = await tempDir('edge-unit-root-');
    t.after(() => removeDir(root));
    const [lib, log, etc] = ['lib', 'log', 'etc'].map((name) => path.join(root, name));
    for (const folder of [lib!, log!, etc!]) await mkdir(folder);
    const config = path.join(etc!, 'node_config.json');
    const settings = { storage: { path: lib }, logging: { fileEnabled: true, filePath: path.join(log!, 'node.log') } };

    const ran = await runNode(t, families, { config, settings, writable: [lib!, log!, etc!] });
    assert.equal(ran.code, null, ran.lines.join('\n'));
    const saved = JSON.parse(await readFile(config, 'utf8')) as { nodeId?: string; adminToken?: string };
    assert.match(String(saved.nodeId), /^node-[0-9a-f]{8}$/, 'the config was written (its folder is writable)');
    assert.equal(typeof saved.adminToken, 'string');
    assert.match(await readFile(path.join(log!, 'node.log'), 'utf8'), /listening on 0\.0\.0\.0:\d+/);
    assert.deepEqual(await readdir(lib!), [], 'the lock was taken and removed at stop');

    // The control: the same sandbox without the storage folder among the writable ones refuses to start.
    const refused = await runNode(t, families, { config, settings, writable: [log!, etc!] });
    assert.equal(refused.code, 78, refused.lines.join('\n'));
    assert.match(refused.lines.join('\n'), /refusing to start: storage\.path: .*read-only filesystem/);
    // A config folder left out: a config that needs its first write (no nodeId yet) is refused in one line, not a crash.
    const etc2 = path.join(root, 'etc2');
    await mkdir(etc2);
    const fresh = await runNode(t, families, { config: path.join(etc2, 'node_config.json'), settings, writable: [lib!, log!] });
    assert.equal(fresh.code, 78, fresh.lines.join('\n'));
    assert.deepEqual(fresh.lines.filter((line) => line.includes('refusing to start')), fresh.lines.slice(-1));
    assert.match(fresh.lines.at(-1) ?? '', /refusing to start: invalid configuration: \S+etc2\/node_config\.json: cannot be written \(.*read-only file system/);
    assert.deepEqual(await readdir(lib!), [], 'no lock left behind');
  });
});

/**
 * The command wrapped in a private mount namespace (unshare) where / is remounted read-only and
 * only `writable` stay writable, as systemd's ProtectSystem=strict + ReadWritePaths= do. Nothing
 * leaves the namespace (private propagation). Needs root or unprivileged user namespaces.
 */
function protectSystem(writable: string[], command: string[]): string[] {
  const script = 'set -e; n=$1; shift; while [ "$n" -gt 0 ]; do mount --bind "$1" "$1"; shift; n=$((n-1)); done; mount -o remount,bind,ro /; exec "$@"';
  const user = process.getuid?.() === 0 ? [] : ['--map-root-user'];
  return ['unshare', '--mount', '--propagation', 'private', ...user, 'sh', '-c', script, 'sh', String(writable.length), ...writable, ...command];
}
