/**
 * One open descriptor per stored package, shared by every response sending it (nginx's
 * open_file_cache): responses read by position (sendfile with an offset, pread), so a thousand
 * tablets downloading one package hold a thousand sockets and one file, not two thousand
 * descriptors, and only the first of a herd waits for an open.
 *
 * The descriptor belongs to the package it was opened for, never to its path: a meeting restart
 * renames a new package over the old one. A response asking after that gets a descriptor of the
 * new file (the old one is no longer what the store holds); responses that already hold the old
 * descriptor finish on the old bytes, and the last of them closes it. Nothing is kept open once no
 * response reads it, so an evicted package's disk space is freed by its last reader, as before.
 */
import type { OpenedPackage, StoredPackage } from '../store/package-store.ts';
import { closeFd } from './file-pump.ts';

export interface HeldPackage {
  readonly fd: number;
  /** The package as the store holds it now (its metadata may be newer than the open's). */
  readonly pkg: StoredPackage;
  /** Gives the descriptor back; once. */
  release(): void;
}

export interface PackageFileSource {
  /** A fresh descriptor of what the store holds for `meetingId`, checked to be that file (store.open). */
  open(meetingId: string): Promise<OpenedPackage | undefined>;
  /** What the store holds for `meetingId` now. */
  get(meetingId: string): StoredPackage | undefined;
}

interface Entry {
  /** The open in flight (or done): every acquirer meanwhile awaits the same one. */
  readonly opening: Promise<OpenedPackage | undefined>;
  holders: number;
}

/** Opens this many times at most when the package keeps being replaced under the open. */
const MAX_ATTEMPTS = 3;

export class SharedPackageFiles {
  readonly #source: PackageFileSource;
  /** Per meeting, the entry of the package the store held when it was opened. */
  readonly #entries = new Map<string, Entry>();

  constructor(source: PackageFileSource) {
    this.#source = source;
  }

  /** Packages with a descriptor open right now (tests and diagnostics). */
  get openCount(): number {
    return this.#entries.size;
  }

  /**
   * A descriptor of the package the store holds for `meetingId` now, or undefined when it holds
   * none (or it kept being replaced). Rejects with an open error other than ENOENT.
   */
  async acquire(meetingId: string): Promise<HeldPackage | undefined> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let entry = this.#entries.get(meetingId);
      if (!entry) {
        const created: Entry = { opening: this.#source.open(meetingId), holders: 0 };
        this.#entries.set(meetingId, created);
        // Nothing opened (no package, or an error): not kept, the next acquire opens again.
        const forget = () => {
          if (this.#entries.get(meetingId) === created && created.holders === 0) this.#entries.delete(meetingId);
        };
        created.opening.then((opened) => opened ?? forget(), forget);
        entry = created;
      }
      entry.holders += 1;
      let opened: OpenedPackage | undefined;
      try {
        opened = await entry.opening;
      } catch (error) {
        this.#drop(meetingId, entry, null);
        throw error;
      }
      if (!opened) {
        this.#drop(meetingId, entry, null);
        return undefined;
      }
      const current = this.#source.get(meetingId);
      if (current && sameFile(current, opened.pkg)) return this.#held(meetingId, entry, opened.fd, current);
      // Replaced or evicted since this descriptor was opened: it is no one's to start on any more.
      if (this.#entries.get(meetingId) === entry) this.#entries.delete(meetingId);
      this.#drop(meetingId, entry, opened.fd);
      if (!current) return undefined;
    }
    return undefined;
  }

  #held(meetingId: string, entry: Entry, fd: number, pkg: StoredPackage): HeldPackage {
    let released = false;
    return {
      fd,
      pkg,
      release: () => {
        if (released) return;
        released = true;
        this.#drop(meetingId, entry, fd);
      },
    };
  }

  /** One holder less; the last one closes the descriptor (if one was opened). */
  #drop(meetingId: string, entry: Entry, fd: number | null): void {
    entry.holders -= 1;
    if (entry.holders > 0) return;
    if (this.#entries.get(meetingId) === entry) this.#entries.delete(meetingId);
    if (fd !== null) void closeFd(fd);
  }
}

/** The same file on disk: a replaced package is a new inode renamed over the path. */
function sameFile(a: StoredPackage, b: StoredPackage): boolean {
  return a.inode === b.inode && a.size === b.size && a.sha256 === b.sha256;
}
