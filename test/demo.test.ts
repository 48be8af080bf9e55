/**
 * `npm run demo` as a newcomer runs it: --help lists the flags, mistakes are one line naming the
 * flag to change (no stack trace), and the admin token and the config survive a second run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { cleanupStack, removeDir, REPO_ROOT, tempDir } from './helpers.ts';

function runDemo(args: string[], timeoutMs = 90_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`demo ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test('demo --help lists every flag and exits 0', async () => {
  const { code, stdout } = await runDemo(['--help']);
  assert.equal(code, 0);
  for (const flag of ['--master-port', '--node-port', '--size', '--throttle', '--dir', '--check', '--help']) assert.match(stdout, new RegExp(flag), flag);
});

test('demo mistakes are one line naming the flag to change, never a stack trace', async (t) => {
  const defer = cleanupStack(t);
  const dir = await tempDir('edge-demo-');
  defer(() => removeDir(dir));
  const unknown = await runDemo(['--bogus', '--dir', dir]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--bogus.*--help/);

  const badPort = await runDemo(['--node-port', '99999', '--dir', dir]);
  assert.equal(badPort.code, 1);
  assert.match(badPort.stderr, /--node-port expects a port/);

  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  defer(() => new Promise<void>((resolve) => busy.close(() => resolve())));
  const busyPort = (busy.address() as { port: number }).port;
  const master = await runDemo(['--master-port', String(busyPort), '--node-port', String(await freePort()), '--dir', dir]);
  assert.equal(master.code, 1);
  assert.equal(master.stderr.trim(), `demo: port ${busyPort} is in use: pass --master-port N`);
  const node = await runDemo(['--master-port', String(await freePort()), '--node-port', String(busyPort), '--dir', dir, '--check']);
  assert.equal(node.code, 1);
  assert.equal(node.stderr.trim(), `demo: port ${busyPort} is in use: pass --node-port N`);
  for (const run of [unknown, badPort, master, node]) {
    assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(run.stderr.trim().split('\n').length, 1, `one line: ${run.stderr}`);
  }
});

test('demo keeps its admin token and the config changed between runs', { timeout: 200_000 }, async (t) => {
  const defer = cleanupStack(t);
  const dir = await tempDir('edge-demo-');
  defer(() => removeDir(dir));
  const flags = () => Promise.all([freePort(), freePort()]).then(([m, n]) => ['--master-port', String(m), '--node-port', String(n), '--size', '65536', '--throttle', '0', '--dir', dir, '--check']);
  const first = await runDemo(await flags());
  assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
  // The banner names the meeting the node preheats, beside the two it syncs.
  assert.match(first.stdout, /^reference master: http:\/\/127\.0\.0\.1:\d+ \(meetings: \S+, \S+; scheduled later, preheated by the node: \S+\)$/m);
  const token = /admin token: (\S+)/.exec(first.stdout)?.[1];
  assert.ok(token, first.stdout);
  // A change the panel would have saved.
  const configPath = path.join(dir, 'node_config.json');
  const saved = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  assert.equal(saved.adminToken, token);
  await writeFile(configPath, JSON.stringify({ ...saved, syncInterval: 42 }, null, 4));

  const second = await runDemo(await flags());
  assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
  assert.equal(/admin token: (\S+)/.exec(second.stdout)?.[1], token, 'the same token on the second run');
  const after = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
  assert.equal(after.syncInterval, 42, 'the change survived the second run');
  assert.equal(after.nodeId, saved.nodeId);
});

test('a second demo on the same --dir is refused in one line naming the running one; the first keeps running', { timeout: 120_000 }, async (t) => {
  const defer = cleanupStack(t);
  const dir = await tempDir('edge-demo-');
  defer(() => removeDir(dir));
  const ports = async () => ['--master-port', String(await freePort()), '--node-port', String(await freePort()), '--size', '65536', '--dir', dir];
  const first = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...(await ports())], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const firstExit = new Promise<number | null>((resolve) => first.once('exit', resolve));
  defer(async () => {
    if (first.exitCode === null) first.kill('SIGKILL');
    await firstExit;
  });
  let stdout = '';
  first.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the first demo did not start: ${stdout}`)), 60_000);
    first.stdout.on('data', () => {
      if (stdout.includes('control panel:')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const second = await runDemo([...(await ports()), '--check']);
  assert.equal(second.code, 1, second.stderr);
  assert.equal(second.stderr.trim(), `demo: another node runs on ${dir} (pid ${first.pid}): stop it, or pass another --dir`);
  assert.equal(first.exitCode, null, 'the first demo still runs');
  first.kill('SIGTERM');
  assert.equal(await firstExit, 0);
});
