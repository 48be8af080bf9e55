/**
 * One node per storage folder (issue 19): a second start on the same storage (same config, or
 * another config naming the same folder) exits 78 naming the process that holds it, before its
 * start-up cleanup can touch the first node's downloads in flight; a lock left by a node killed
 * with SIGKILL is taken over. Real processes: the lock is about them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, test } from 'node:test';
import { buildStartJs, cleanupStack, fetchRaw, freePort, killProcess, removeDir, spawnNodeProcess, startMaster, tempDir, testConfig, waitFor } from './helpers.ts';

let startJs = '';
before(async () => {
  startJs = await buildStartJs();
});

/** start.js with this config; resolves with its exit once it ends, or once it prints that it listens. */
function runCli(config: string, cwd: string) {
  return new Promise<{ code: number | null; stdout: string; stderr: string; child: ReturnType<typeof spawn> }>((resolve) => {
    void freePort().then((port) => {
      const child = spawn(process.execPath, [startJs, '--config', config, '--port', String(port), '--host', '127.0.0.1'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        stdout += text;
        if (stdout.includes('control panel:')) {
          clearTimeout(timer);
          resolve({ code: null, stdout, stderr, child });
        }
      });
      child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr, child });
      });
    });
  });
}

test('a second node on the same storage exits 78 naming the first; its cleanup never ran; a SIGKILLed node\'s lock is taken over', async (t) => {
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  const dir = await tempDir();
  defer(() => removeDir(dir));
  const config = path.join(dir, 'node_config.json');
  await writeFile(config, JSON.stringify(testConfig(m.port)));
  const first = await spawnNodeProcess(config);
  defer(() => killProcess(first));

  // A download in flight of the first node, as its temp file: the second node's start-up cleanup would delete it.
  const inFlight = path.join(dir, 'storage', 'meeting_m1', 'package.zip.part-0123456789ab');
  await mkdir(path.dirname(inFlight), { recursive: true });
  await writeFile(inFlight, 'bytes still arriving');

  const same = await runCli(config, dir);
  assert.equal(same.code, 78, same.stderr + same.stdout);
  const lines = same.stderr.trim().split('\n');
  assert.equal(lines.length, 1, same.stderr);
  assert.match(lines[0] ?? '', new RegExp(`^meeting-edge: refusing to start: storage\\.path: \\S+ is in use by another meeting-edge node: pid ${first.child.pid}, started \\S+, config ${config.replaceAll('/', '\\/')}, lock file `));

  // Another config naming the same storage folder: the same refusal.
  const otherDir = await tempDir();
  defer(() => removeDir(otherDir));
  const otherConfig = path.join(otherDir, 'node_config.json');
  await writeFile(otherConfig, JSON.stringify(testConfig(m.port, { storage: { path: path.join(dir, 'storage') } })));
  const other = await runCli(otherConfig, otherDir);
  assert.equal(other.code, 78, other.stderr);
  assert.match(other.stderr, new RegExp(`pid ${first.child.pid}`));

  assert.ok(existsSync(inFlight), 'the first node\'s download in flight is untouched');
  assert.equal((await fetchRaw(`${first.url}/healthz`)).status, 200, 'and the first node still runs');

  // Crashed: the lock stays behind, names a dead pid, and the next start takes it over.
  await killProcess(first);
  const lockFile = path.join(dir, 'storage', 'meeting-edge.lock');
  assert.equal((JSON.parse(await readFile(lockFile, 'utf8')) as { pid: number }).pid, first.child.pid);
  const after = await runCli(config, dir);
  defer(() => after.child.kill('SIGKILL'));
  assert.equal(after.code, null, `started: ${after.stderr}`);
  assert.match(after.stdout, new RegExp(`took over the lock of a node that is no longer running \\(pid ${first.child.pid}, `));
  assert.equal((JSON.parse(await readFile(lockFile, 'utf8')) as { pid: number }).pid, after.child.pid);
  assert.ok(!existsSync(inFlight), 'the crashed node\'s temp file is cleaned up by the node that took over');

  // A clean stop removes the lock.
  after.child.kill('SIGTERM');
  await waitFor('stopped', () => after.child.exitCode !== null, 15_000);
  assert.equal(after.child.exitCode, 0);
  assert.ok(!existsSync(lockFile), 'released at stop');
});
