/**
 * Power-loss ordering, read from the system calls the node makes (strace): a package counts as
 * synced only after its bytes, its manifest and its folder are on disk, in this order:
 *   fsync(temp file) → manifest: fsync(manifest temp) + rename onto manifest.json →
 *   rename(temp → package.zip) → fsync(meeting folder) → heartbeat reporting it synced.
 * A crash (power loss) between any two steps then leaves either the old state or the new one,
 * whole. SIGKILL cannot test this (the page cache survives a killed process); the order can.
 * .ci/run installs strace; where it is missing or not permitted the test fails (it must not pass unseen).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { cleanupStack, REPO_ROOT, removeDir, startMaster, tempDir, testConfig, waitFor } from './helpers.ts';

function straceWorks(): boolean {
  const probe = spawnSync('strace', ['-f', '-e', 'trace=fsync', '-o', '/dev/null', process.execPath, '-e', '0'], { stdio: 'ignore' });
  return probe.status === 0;
}

interface Syscall {
  pid: number;
  start: number;
  end: number;
  text: string;
}

/** strace -f -ttt -y output → calls with start and completion times (split calls joined). */
function parseStrace(log: string): Syscall[] {
  const calls: Syscall[] = [];
  const pending = new Map<number, { start: number; text: string }>();
  for (const line of log.split('\n')) {
    const match = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const pid = Number(match[1]);
    const time = Number(match[2]);
    const rest = match[3]!;
    if (rest.endsWith('<unfinished ...>')) {
      // "fsync(7</dir> <unfinished ...>" + "<... fsync resumed>) = 0": joined without the space.
      pending.set(pid, { start: time, text: rest.slice(0, -'<unfinished ...>'.length).trimEnd() });
      continue;
    }
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(rest);
    if (resumed) {
      const begun = pending.get(pid);
      pending.delete(pid);
      if (begun) calls.push({ pid, start: begun.start, end: time, text: begun.text + resumed[1] });
      continue;
    }
    calls.push({ pid, start: time, end: time, text: rest });
  }
  return calls;
}

test('a package counts as synced only after fsync of the file, the manifest, the rename and fsync of the folder, in that order', { timeout: 120_000 }, async (t) => {
  assert.ok(straceWorks(), 'strace must be installed and permitted (apt-get install strace)');
  const defer = cleanupStack(t);
  const m = await startMaster();
  defer(() => m.close());
  m.master.addMeeting({ id: 'm1', title: 'Durable', packageSizeBytes: 300_000 });
  await m.master.startMeeting('m1');
  const dir = await tempDir('edge-fsync-');
  defer(() => removeDir(dir));
  const configPath = path.join(dir, 'node_config.json');
  await writeFile(configPath, JSON.stringify(testConfig(m.port, { syncInterval: 3600, heartbeat: { interval: 300 } }), null, 2));
  const log = path.join(dir, 'strace.log');
  const child = spawn(
    'strace',
    ['-f', '-ttt', '-y', '-s', '300', '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2,write,writev', '-o', log, process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'scripts/lib/run-node.ts'), configPath],
    { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // strace blocks fatal signals when it runs a program with -o: signals go to the traced node
  // (strace's child running run-node.ts), and strace exits with it.
  const signalNode = async (signal: NodeJS.Signals) => {
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== child.pid) continue;
        if (!(await readFile(`/proc/${entry}/cmdline`, 'utf8')).includes('run-node.ts')) continue;
        process.kill(Number(entry), signal);
      } catch {
        // The process went away while we looked.
      }
    }
  };
  defer(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      await signalNode('SIGKILL');
      await exited;
    }
  });
  const nodeSynced = () => m.master.nodes().some((node) => node.syncedMeetings.includes('m1'));
  await waitFor('the node to report m1 synced', nodeSynced, 60_000, 100);
  await signalNode('SIGTERM');
  await exited;

  const calls = parseStrace(await readFile(log, 'utf8'));
  const meetingDir = path.join(dir, 'storage', 'meeting_m1');
  const escaped = meetingDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const find = (what: string, pattern: RegExp, last = false): Syscall => {
    const found = last ? calls.filter((c) => pattern.test(c.text)).at(-1) : calls.find((c) => pattern.test(c.text));
    assert.ok(found, `${what}: no system call matching ${pattern}`);
    assert.match(found.text, /= 0\s*$/, `${what} succeeded`);
    return found;
  };
  const packageRename = find('package.zip rename', new RegExp(`^rename\\w*\\(.*"${escaped}/package\\.zip\\.part-[0-9a-f]+", .*"${escaped}/package\\.zip"`));
  const tempName = /package\.zip\.part-[0-9a-f]+/.exec(packageRename.text)![0];
  // The temp file's fd shows the temp name until the rename (strace -y resolves it at the call).
  const dataSyncs = calls.filter((c) => c.end < packageRename.start && /^f(data)?sync\(\d+</.test(c.text) && c.text.includes(tempName));
  assert.ok(dataSyncs.length > 0, 'the temp file was fsynced before the rename');
  const dataSync = dataSyncs.at(-1)!;
  const manifestRename = find('manifest rename', new RegExp(`^rename\\w*\\(.*"${escaped}/manifest\\.json\\.tmp-[0-9a-f]+", .*"${escaped}/manifest\\.json"`));
  const manifestTemp = /manifest\.json\.tmp-[0-9a-f]+/.exec(manifestRename.text)![0];
  const manifestSync = find('manifest temp fsync', new RegExp(`^f(data)?sync\\(\\d+<[^>]*${manifestTemp.replace(/\./g, '\\.')}>`));
  const folderSync = calls.find((c) => c.start > packageRename.end && new RegExp(`^f(data)?sync\\(\\d+<${escaped}>\\)`).test(c.text));
  assert.ok(folderSync, 'the meeting folder was fsynced after the rename');
  const report = calls.find((c) => c.start > packageRename.start && /^write(v)?\(\d+<(socket|TCP)/.test(c.text) && /synced_meetings\\?":\[\\?"m1/.test(c.text));
  assert.ok(report, 'the heartbeat reporting m1 synced was found in the trace');

  t.diagnostic(
    `fsync(temp) done ${dataSync.end.toFixed(6)}; manifest fsync ${manifestSync.end.toFixed(6)}, rename ${manifestRename.end.toFixed(6)}; ` +
      `package rename ${packageRename.end.toFixed(6)}; folder fsync ${folderSync.end.toFixed(6)}; heartbeat ${report.start.toFixed(6)}`,
  );
  assert.ok(dataSync.end <= manifestSync.start || dataSync.end <= manifestRename.start, 'the bytes are durable before the manifest names them');
  assert.ok(manifestSync.end <= manifestRename.start, 'the manifest is durable before it replaces the old one');
  assert.ok(manifestRename.end <= packageRename.start, 'the manifest is in place before the package');
  assert.ok(dataSync.end <= packageRename.start, 'the bytes are durable before they get the final name');
  assert.ok(packageRename.end <= folderSync.start, 'the folder is fsynced after the rename');
  assert.ok(folderSync.end <= report.start, 'the master hears of the package only once the folder is durable');
});
