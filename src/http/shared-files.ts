/**
 * One read-only descriptor per file for everyone reading it at once: the tablets tailing a
 * download all read its temp file, by position (pread, sendfile with an offset), so they can share
 * one descriptor. Opening one per tablet put 500 opens and closes through libuv's thread pool at
 * the instant a meeting starts: each tablet's first byte waited for its own open, queued behind
 * the others' (measured ~0.1 ms of main-thread time per open and close, and the opens spread the
 * herd's first bytes over the whole catch-up instead of sending them in one turn).
 *
 * The descriptor stays open while anyone holds it and is closed by the last release. A file
 * renamed or unlinked meanwhile keeps being read through it, as with a descriptor of one's own.
 */
import { constants, open } from 'node:fs';
import { closeFd } from './file-pump.ts';

export interface SharedFile {
  readonly fd: number;
  /** Gives the descriptor back; call exactly once. */
  release(): void;
}

interface Entry {
  /** The open in flight (or done): every acquirer of the same path awaits the same one. */
  opening: Promise<number | null>;
  holders: number;
}

export class SharedReadFiles {
  readonly #entries = new Map<string, Entry>();

  /** Files open right now (for tests and status). */
  get openCount(): number {
    return this.#entries.size;
  }

  /**
   * A shared descriptor of `path`, or null when the file does not exist (ENOENT). Rejects with any
   * other open error (and the next acquire tries again).
   */
  async acquire(path: string): Promise<SharedFile | null> {
    let entry = this.#entries.get(path);
    if (!entry) {
      const created: Entry = { opening: openReadOnly(path), holders: 0 };
      this.#entries.set(path, created);
      // A failed or ENOENT open is not kept: the file may appear (or the error pass) later.
      created.opening.then(
        (fd) => {
          if (fd === null && this.#entries.get(path) === created) this.#entries.delete(path);
        },
        () => {
          if (this.#entries.get(path) === created) this.#entries.delete(path);
        },
      );
      entry = created;
    }
    entry.holders += 1;
    let fd: number | null;
    try {
      fd = await entry.opening;
    } catch (error) {
      entry.holders -= 1;
      throw error;
    }
    if (fd === null) {
      entry.holders -= 1;
      return null;
    }
    const opened = fd;
    const held = entry;
    let released = false;
    return {
      fd: opened,
      release: () => {
        if (released) return;
        released = true;
        held.holders -= 1;
        if (held.holders > 0) return;
        if (this.#entries.get(path) === held) this.#entries.delete(path);
        void closeFd(opened);
      },
    };
  }
}

function openReadOnly(path: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    open(path, constants.O_RDONLY, (error, fd) => {
      if (!error) return resolve(fd);
      if (error.code === 'ENOENT') return resolve(null);
      reject(error);
    });
  });
}
