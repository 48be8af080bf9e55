import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { UnusablePathError } from './usable-path.ts';

/**
 * One node per storage folder, as nginx's pid file and PostgreSQL's postmaster.pid do it: a lock
 * file naming the process that holds the folder (pid, the process's start time, the boot), taken
 * at start before anything in the folder is touched (a second node's start-up cleanup would
 * delete the first one's downloads in flight) and removed at stop. The config file names the
 * storage, so it is one node per config too.
 *
 * The file is written whole under a temporary name, then linked to its name: link(2) fails if the
 * name exists (as O_EXCL does) and no reader ever sees it half-written. A lock whose process is
 * gone is stale and taken over: the pid is not running (or is a zombie), or it is running but
 * started at another moment than the holder did (the pid was reused, e.g. every container start
 * gives the node the same pid), or the machine booted since. Where /proc is missing, a running
 * pid holds the lock: losing nothing matters more than starting.
 */

export const LOCK_FILE = 'meeting-edge.lock';

/** Another running node holds the storage folder: refused like an unusable storage.path (exit 78). */
export class StorageInUseError extends UnusablePathError {
  constructor(
    dir: string,
    readonly holder: LockHolder,
    lockPath: string,
  ) {
    super('storage.path', `${dir} is in use by another meeting-edge node: ${describeHolder(holder)}, lock file ${lockPath}; stop that node, or give this one its own storage.path`);
    this.name = 'StorageInUseError';
  }
}

export interface LockHolder {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null where there is no /proc. */
  processStart: string | null;
  bootId: string | null;
  startedAt: string;
  configPath: string;
  /** Tells two holders in one process apart (release removes only its own lock). */
  instance: string;
}

export interface ProcessProbe {
  /** Whether a process with this pid exists (signal 0). */
  exists(pid: number): boolean;
  /** Its state letter and start time from /proc/<pid>/stat, null when unreadable. */
  stat(pid: number): { state: string; start: string } | null;
  bootId(): string | null;
}

export const LINUX_PROCESSES: ProcessProbe = {
  exists(pid) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (error) {
      // EPERM: it exists, under another user.
      return (error as NodeJS.ErrnoException).code === 'EPERM';
    }
  },
  stat(pid) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      const state = fields[0];
      const start = fields[19];
      return state && start ? { state, start } : null;
    } catch {
      return null;
    }
  },
  bootId() {
    try {
      return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      return null;
    }
  },
};

export interface AcquiredLock {
  /** The stale lock taken over (its process had died), for the log; null when there was none. */
  tookOver: LockHolder | null;
  release(): Promise<void>;
}

/**
 * Takes the storage folder's lock, or throws UnusablePathError('storage.path') naming the process
 * that holds it. `dir` must exist.
 */
export async function acquireStorageLock(dir: string, configPath: string, processes: ProcessProbe = LINUX_PROCESSES): Promise<AcquiredLock> {
  const lockPath = path.join(dir, LOCK_FILE);
  const self: LockHolder = {
    pid: process.pid,
    processStart: processes.stat(process.pid)?.start ?? null,
    bootId: processes.bootId(),
    startedAt: new Date().toISOString(),
    configPath,
    instance: randomBytes(8).toString('hex'),
  };
  const staging = `${lockPath}.${process.pid}.${self.instance}`;
  const handle = await open(staging, 'wx', 0o644);
  try {
    await handle.writeFile(`${JSON.stringify(self)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  let tookOver: LockHolder | null = null;
  try {
    // A few rounds: a stale lock removed here may be replaced by another starter in between.
    for (let round = 0; round < 5; round++) {
      try {
        await link(staging, lockPath);
        return { tookOver, release: () => releaseLock(lockPath, self.instance) };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = await readHolder(lockPath);
      if (holder === 'gone') continue;
      if (holder !== 'unreadable' && holds(holder, self, processes)) {
        throw new StorageInUseError(dir, holder, lockPath);
      }
      tookOver = holder === 'unreadable' ? null : holder;
      await unlink(lockPath).catch(ignoreMissing);
    }
    throw new UnusablePathError('storage.path', `${dir}: its lock file ${lockPath} keeps changing; is another node starting on it?`);
  } finally {
    await unlink(staging).catch(ignoreMissing);
  }
}

/** Whether the recorded holder is a process running now (the same one that wrote the lock). */
function holds(holder: LockHolder, self: LockHolder, processes: ProcessProbe): boolean {
  if (holder.bootId && self.bootId && holder.bootId !== self.bootId) return false;
  if (!processes.exists(holder.pid)) return false;
  const stat = processes.stat(holder.pid);
  if (stat === null) return true;
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return holder.processStart === null || stat.start === holder.processStart;
}

export function describeHolder(holder: LockHolder): string {
  return `pid ${holder.pid}, started ${holder.startedAt}, config ${holder.configPath}`;
}

async function readHolder(lockPath: string): Promise<LockHolder | 'gone' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as LockHolder;
    return Number.isInteger(parsed.pid) && parsed.pid > 0 ? parsed : 'unreadable';
  } catch {
    // Never written by a node (it links only whole files): not a lock anyone holds.
    return 'unreadable';
  }
}

async function releaseLock(lockPath: string, instance: string): Promise<void> {
  const holder = await readHolder(lockPath).catch(() => 'unreadable' as const);
  // Only our own: a lock taken over after ours was judged stale is someone else's now.
  if (typeof holder === 'object' && holder.instance === instance) await unlink(lockPath).catch(ignoreMissing);
}

function ignoreMissing(error: NodeJS.ErrnoException): void {
  if (error.code !== 'ENOENT') throw error;
}
