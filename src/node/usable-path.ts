import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../config/config-store.ts';
import type { Logger } from '../log/logger.ts';
import { PackageStore } from '../store/package-store.ts';

/**
 * Start-up checks of the folders and files the node writes, before winston or the store touch
 * them: the folder is created one level at a time, then a probe file is written, fsynced and
 * removed, everything within a time limit. Node's own recursive mkdir spins forever under /proc
 * (100 % CPU, and mkdirSync blocks the thread SIGTERM would be handled on); a hung network mount
 * would block as long. Each check answers the reason a path cannot be used, or null.
 */

const DEFAULT_TIMEOUT_MS = 5_000;

/** A configured path the node cannot use: refused like an invalid config, in one line naming the key. */
export class UnusablePathError extends ConfigError {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`${key}: ${reason}`, { [key]: reason });
    this.name = 'UnusablePathError';
  }
}

/** A path the node cannot use (`reason` not null): the start is refused like an invalid config, naming the key. */
export function refuseUnusable(key: string, reason: string | null): void {
  if (reason !== null) throw new UnusablePathError(key, reason);
}

/** Opens the package store at `root`: one that cannot be opened is a refused start naming storage.path. */
export async function openStorage(root: string, logger: Logger): Promise<PackageStore> {
  try {
    return await PackageStore.open(root, logger);
  } catch (error) {
    throw new UnusablePathError('storage.path', `${root}: cannot be opened (${(error as Error).message})`);
  }
}

/** Why `dir` cannot hold the node's files (created if missing), or null when it can. */
export function unusableDirectory(dir: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string | null> {
  return withTimeout(checkDirectory(path.resolve(dir)), timeoutMs);
}

/** Why the file at `file` cannot be appended to (its folder created if missing), or null. */
export function unusableFile(file: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string | null> {
  return withTimeout(
    (async () => {
      const absolute = path.resolve(file);
      // Named with the file: the key is a file path, and the folder alone would not say which file.
      const folder = await checkDirectory(path.dirname(absolute));
      if (folder) return `${absolute}: ${folder}`;
      const info = await stat(absolute).catch(() => null);
      if (info && !info.isFile()) return `${absolute} is not a regular file`;
      try {
        // Append mode: an existing log keeps its lines; a new one is the file the logger will use.
        const handle = await open(absolute, 'a');
        await handle.close();
      } catch (error) {
        return `${absolute}: cannot be written (${describe(error)})`;
      }
      return null;
    })(),
    timeoutMs,
  );
}

async function checkDirectory(dir: string): Promise<string | null> {
  // Walk up to the nearest thing that exists, then create the missing folders top down.
  const missing: string[] = [];
  let existing = dir;
  for (;;) {
    try {
      const info = await lstat(existing);
      if (info.isSymbolicLink()) {
        const target = await stat(existing).catch(() => null);
        if (!target) return `${existing} is a broken symbolic link`;
        if (!target.isDirectory()) return `${existing} is not a folder`;
      } else if (!info.isDirectory()) {
        return `${existing} is ${info.isFile() ? 'a file' : 'not a folder'}, so ${dir} cannot be a folder`;
      }
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // ENOTDIR: a file sits somewhere above; walking up finds it and says so.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return `${existing}: cannot be read (${describe(error)})`;
      const parent = path.dirname(existing);
      if (parent === existing) return `${dir}: no such filesystem`;
      missing.unshift(existing);
      existing = parent;
    }
  }
  for (const folder of missing) {
    try {
      await mkdir(folder);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      return `cannot create the folder ${folder} (${describe(error)})`;
    }
  }
  const probe = path.join(dir, `.write-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const handle = await open(probe, 'wx');
    try {
      await handle.write(Buffer.from('meeting-edge write probe\n'));
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    await unlink(probe).catch(() => {});
    return `${dir}: cannot write a file there (${describe(error)})`;
  }
  try {
    await unlink(probe);
  } catch (error) {
    return `${dir}: cannot remove a file there (${describe(error)})`;
  }
  return null;
}

function describe(error: unknown): string {
  const err = error as NodeJS.ErrnoException;
  const messages: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only filesystem',
    ENOSPC: 'no space left on the device',
    ENOTDIR: 'a part of the path is not a folder',
    ENOENT: 'no such file or folder',
    EISDIR: 'is a folder',
  };
  return (err.code && messages[err.code]) ? `${messages[err.code]}, ${err.code}` : err.message;
}

function withTimeout(check: Promise<string | null>, timeoutMs: number): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer from the filesystem within ${Math.round(timeoutMs / 1000)} s`), timeoutMs);
    timer.unref();
  });
  return Promise.race([check, timeout]).finally(() => clearTimeout(timer));
}
