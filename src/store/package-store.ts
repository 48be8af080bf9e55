import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { close, constants, fstat, open as openCallback } from 'node:fs';
import { promisify } from 'node:util';
import { mkdir, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { isValidMeetingId } from '../meeting-id.ts';
import type { Logger } from '../log/logger.ts';
import { fsyncDirectory, fsyncFile } from './fs-durability.ts';
import { hashFile } from './hash-file.ts';
import { checkZipFile } from './zip-check.ts';
import { fileIdentity } from './zip-lead.ts';
import { MANIFEST_FILE, readManifest, writeManifest, type PackageManifest } from './manifest.ts';
import { awaitsStartCheck, standsForToRecord, type FetchedSource } from './package-state.ts';

export { standsForBuild, type PackageSource } from './package-state.ts';
export type { PackageManifest } from './manifest.ts';

export interface StoredPackage extends PackageManifest {
  path: string;
}

export interface OpenedPackage {
  fd: number;
  pkg: StoredPackage;
}

export interface PromoteMeta {
  sha256: string;
  size: number;
  token: string | null;
  title: string;
  /** Default 'master'. */
  source?: FetchedSource;
  /** The master's build these bytes stand for when they are of another build with its documents. */
  standsFor?: string | null;
}

export type StoreEvent =
  | { type: 'promoted'; meetingId: string; pkg: StoredPackage; replaced: boolean }
  | { type: 'removed'; meetingId: string; reason: string }
  | { type: 'retagged'; meetingId: string; token: string | null }
  | { type: 'confirmed'; meetingId: string; buildId: string };

const openFd = promisify(openCallback) as (path: string, flags: number) => Promise<number>;
const fstatFd = promisify(fstat);
const closeFd = promisify(close);

const PACKAGE_FILE = 'package.zip';
const PART_MARKER = '.part-';
const TMP_MARKER = '.tmp-';
const DIR_PREFIX = 'meeting_';

/**
 * Owns the disk layout, compatible with the reference node:
 *   storage/meeting_{id}/package.zip      the complete, verified package
 *   storage/meeting_{id}/manifest.json    sha256, size, fetched time, token, title
 *   storage/meeting_{id}/package.zip.part-XXXX   a download in progress (removed at start)
 *
 * Only complete packages are ever under the name package.zip: downloads land in a .part file in
 * the same folder (same filesystem, so the final rename is atomic), are fsynced, described by a
 * manifest, renamed into place, and the folder is fsynced. Readers hold an open fd, so a package
 * replaced or deleted under them keeps its old bytes until they finish.
 */
export class PackageStore {
  readonly root: string;
  readonly events = new EventEmitter<{ change: [StoreEvent] }>();
  #packages = new Map<string, StoredPackage>();
  /**
   * Changes to one meeting's package (promote, retag, confirm, remove), one at a time: a removal
   * racing a promotion could otherwise unlink the new file after its rename.
   */
  #changing = new Map<string, Promise<unknown>>();
  #logger: Logger;

  private constructor(root: string, logger: Logger) {
    this.root = root;
    this.#logger = logger;
  }

  /** Opens the storage folder: removes crash leftovers, adopts and verifies what is there. */
  static async open(root: string, logger: Logger): Promise<PackageStore> {
    const store = new PackageStore(path.resolve(root), logger);
    await mkdir(store.root, { recursive: true });
    await store.#scan();
    return store;
  }

  meetingDir(meetingId: string): string {
    assertMeetingId(meetingId);
    return path.join(this.root, `${DIR_PREFIX}${meetingId}`);
  }

  get(meetingId: string): StoredPackage | undefined {
    return this.#packages.get(meetingId);
  }

  list(): StoredPackage[] {
    return [...this.#packages.values()];
  }

  /** Bytes held by complete packages (from memory: no directory walk). */
  usedBytes(): number {
    let total = 0;
    for (const pkg of this.#packages.values()) total += pkg.size;
    return total;
  }

  /** A fresh temp path for a download of this meeting, in the meeting's own folder. */
  async createTempPath(meetingId: string): Promise<string> {
    const dir = this.meetingDir(meetingId);
    await mkdir(dir, { recursive: true });
    return path.join(dir, `${PACKAGE_FILE}${PART_MARKER}${randomBytes(6).toString('hex')}`);
  }

  async discardTemp(tempPath: string): Promise<void> {
    await unlink(tempPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  /**
   * Makes a verified temp file the meeting's package. Order matters for crash safety:
   * fsync data → manifest naming the new inode (atomic) → rename → fsync folder. A crash before the
   * rename leaves the old package with a manifest that no longer matches its inode, which start-up
   * detects and re-verifies; it never leaves a partial file under the final name.
   */
  promote(meetingId: string, tempPath: string, meta: PromoteMeta): Promise<StoredPackage> {
    return this.#exclusive(meetingId, () => this.#promote(meetingId, tempPath, meta));
  }

  async #promote(meetingId: string, tempPath: string, meta: PromoteMeta): Promise<StoredPackage> {
    const dir = this.meetingDir(meetingId);
    await fsyncFile(tempPath);
    const info = await stat(tempPath);
    if (info.size !== meta.size) {
      throw new Error(`temp file is ${info.size} bytes, expected ${meta.size}`);
    }
    const finalPath = path.join(dir, PACKAGE_FILE);
    // A preheat is not servable, but a package.zip that no longer matches its manifest is adopted
    // (servable) at start-up: a crash after the new manifest, before the rename, would serve the
    // preheat's unchecked documents. Remove it first; a crash then leaves nothing to serve.
    const previous = this.#packages.get(meetingId);
    if (previous && awaitsStartCheck(previous)) {
      await unlink(finalPath).catch(ignoreMissing);
      await fsyncDirectory(dir);
    }
    const identity = await fileIdentity(tempPath);
    const manifest: PackageManifest = {
      version: 1,
      meetingId,
      sha256: meta.sha256,
      size: meta.size,
      fetchedAt: new Date().toISOString(),
      token: meta.token,
      title: meta.title,
      source: meta.source ?? 'master',
      buildId: identity.buildId,
      documentsId: identity.documentsId,
      standsFor: standsForToRecord(identity.buildId, meta.standsFor),
      inode: info.ino,
      mtimeMs: info.mtimeMs,
    };
    await writeManifest(dir, manifest);
    await rename(tempPath, finalPath);
    await fsyncDirectory(dir);
    const replaced = this.#packages.has(meetingId);
    const pkg: StoredPackage = { ...manifest, path: finalPath };
    this.#packages.set(meetingId, pkg);
    this.events.emit('change', { type: 'promoted', meetingId, pkg, replaced });
    return pkg;
  }

  /**
   * Records a newer master token for a package whose bytes are known to be current, and the
   * master's build they stand for when they are of an equivalent one (`standsFor`).
   */
  retag(meetingId: string, token: string | null, standsFor: string | null = null): Promise<void> {
    return this.#exclusive(meetingId, () => this.#retag(meetingId, token, standsFor));
  }

  async #retag(meetingId: string, token: string | null, standsFor: string | null): Promise<void> {
    const pkg = this.#packages.get(meetingId);
    if (!pkg) return;
    const recorded = standsForToRecord(pkg.buildId, standsFor) ?? pkg.standsFor;
    if (pkg.token === token && pkg.standsFor === recorded) return;
    const { path: _path, ...manifest } = pkg;
    const next: PackageManifest = { ...manifest, token, standsFor: recorded };
    await writeManifest(this.meetingDir(meetingId), next);
    // The package may have been replaced or removed while the manifest was written.
    if (this.#packages.get(meetingId) === pkg) {
      this.#packages.set(meetingId, { ...next, path: pkg.path });
      this.events.emit('change', { type: 'retagged', meetingId, token });
    }
  }

  /**
   * A preheated package found to hold the documents of the master's build at the meeting's start:
   * it now stands for that build (servable, reported synced) under the poll's token.
   */
  confirm(meetingId: string, token: string | null, buildId: string): Promise<boolean> {
    return this.#exclusive(meetingId, () => this.#confirm(meetingId, token, buildId));
  }

  async #confirm(meetingId: string, token: string | null, buildId: string): Promise<boolean> {
    const pkg = this.#packages.get(meetingId);
    if (!pkg || !awaitsStartCheck(pkg)) return false;
    const { path: _path, ...manifest } = pkg;
    const next: PackageManifest = { ...manifest, token, source: 'confirmed', standsFor: buildId };
    await writeManifest(this.meetingDir(meetingId), next);
    if (this.#packages.get(meetingId) !== pkg) return false;
    this.#packages.set(meetingId, { ...next, path: pkg.path });
    this.events.emit('change', { type: 'confirmed', meetingId, buildId });
    return true;
  }

  /**
   * Deletes a meeting's package (only if `options.if` holds for it, when given: checked in the same
   * turn as the removal). It leaves memory first so no new reader can open it; readers already
   * holding the fd finish on the unlinked inode.
   */
  remove(meetingId: string, reason: string, options: { if?: (pkg: StoredPackage) => boolean } = {}): Promise<boolean> {
    return this.#exclusive(meetingId, () => this.#remove(meetingId, reason, options));
  }

  async #remove(meetingId: string, reason: string, options: { if?: (pkg: StoredPackage) => boolean }): Promise<boolean> {
    const pkg = this.#packages.get(meetingId);
    if (!pkg || (options.if && !options.if(pkg))) return false;
    this.#packages.delete(meetingId);
    const dir = this.meetingDir(meetingId);
    // The package first: a package.zip left without its manifest by a crash would be adopted
    // (servable) at start-up, a stale preheat among them; a manifest left alone is only dropped.
    await unlink(pkg.path).catch(ignoreMissing);
    await fsyncDirectory(dir).catch(() => {});
    await unlink(path.join(dir, MANIFEST_FILE)).catch(ignoreMissing);
    // Only remove the folder if nothing else is in it (a download may be writing a .part there).
    await rmdir(dir).catch(() => {});
    await fsyncDirectory(this.root).catch(() => {});
    this.events.emit('change', { type: 'removed', meetingId, reason });
    return true;
  }

  /**
   * Opens the current package for reading and proves the fd is the inode the manifest describes
   * (the package may be replaced between the lookup and the open).
   */
  async open(meetingId: string): Promise<OpenedPackage | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const pkg = this.#packages.get(meetingId);
      if (!pkg) return undefined;
      let fd: number;
      try {
        // A raw fd, not a FileHandle: the sender owns and closes it, and a FileHandle would
        // close it again when garbage-collected.
        fd = await openFd(pkg.path, constants.O_RDONLY);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const info = await fstatFd(fd);
      if (info.ino === pkg.inode && info.size === pkg.size) return { fd, pkg };
      await closeFd(fd);
    }
    return undefined;
  }

  #exclusive<T>(meetingId: string, change: () => Promise<T>): Promise<T> {
    const previous = this.#changing.get(meetingId) ?? Promise.resolve();
    const run = previous.then(change, change);
    const settled = run.catch(() => {});
    this.#changing.set(meetingId, settled);
    void settled.then(() => {
      if (this.#changing.get(meetingId) === settled) this.#changing.delete(meetingId);
    });
    return run;
  }

  async #scan(): Promise<void> {
    const entries = await readdir(this.root, { withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isDirectory()) {
        if (entry.name.includes(TMP_MARKER) || entry.name.includes(PART_MARKER)) {
          await unlink(path.join(this.root, entry.name)).catch(ignoreMissing);
        }
        continue;
      }
      if (!entry.name.startsWith(DIR_PREFIX)) continue;
      const meetingId = entry.name.slice(DIR_PREFIX.length);
      if (!isValidMeetingId(meetingId)) {
        this.#logger.warn(`storage: ignoring folder ${entry.name} (not a valid meeting id)`);
        continue;
      }
      await this.#scanMeeting(meetingId);
    }
  }

  async #scanMeeting(meetingId: string): Promise<void> {
    const dir = this.meetingDir(meetingId);
    for (const name of await readdir(dir)) {
      if (name.includes(PART_MARKER) || name.includes(TMP_MARKER)) {
        this.#logger.info(`storage: removing leftover temp file ${path.join(dir, name)}`);
        await unlink(path.join(dir, name)).catch(ignoreMissing);
      }
    }
    const packagePath = path.join(dir, PACKAGE_FILE);
    let info;
    try {
      info = await stat(packagePath);
    } catch {
      // A removal cut short after the package went: its manifest alone describes nothing.
      await unlink(path.join(dir, MANIFEST_FILE)).catch(ignoreMissing);
      await rmdir(dir).catch(() => {});
      return;
    }
    const manifest = await readManifest(path.join(dir, MANIFEST_FILE));
    if (
      manifest &&
      manifest.meetingId === meetingId &&
      manifest.inode === info.ino &&
      manifest.size === info.size &&
      manifest.mtimeMs === info.mtimeMs
    ) {
      // Manifests written before build identities existed get one from the file's first bytes.
      const identity = manifest.buildId ? manifest : await fileIdentity(packagePath);
      this.#packages.set(meetingId, { ...manifest, buildId: identity.buildId, documentsId: identity.documentsId, path: packagePath });
      return;
    }
    // A reference node's package, or one whose manifest was lost in a crash: verify before serving.
    const zip = await checkZipFile(packagePath);
    if (!zip.ok) {
      this.#logger.warn(`storage: meeting ${meetingId}: package.zip is not a complete zip (${zip.reason}); deleting it`);
      await unlink(packagePath).catch(ignoreMissing);
      await unlink(path.join(dir, MANIFEST_FILE)).catch(ignoreMissing);
      await rmdir(dir).catch(() => {});
      return;
    }
    const { sha256, size } = await hashFile(packagePath);
    const identity = await fileIdentity(packagePath);
    const after = await stat(packagePath);
    const adopted: PackageManifest = {
      version: 1,
      meetingId,
      sha256,
      size,
      fetchedAt: (manifest?.fetchedAt as string | undefined) ?? info.mtime.toISOString(),
      token: null,
      title: manifest?.title ?? '',
      source: 'adopted',
      buildId: identity.buildId,
      documentsId: identity.documentsId,
      standsFor: null,
      inode: after.ino,
      mtimeMs: after.mtimeMs,
    };
    await writeManifest(dir, adopted);
    await fsyncDirectory(dir);
    this.#packages.set(meetingId, { ...adopted, path: packagePath });
    this.#logger.info(`storage: adopted meeting ${meetingId} (${size} bytes, sha256 ${sha256.slice(0, 12)}…)`);
  }
}

function assertMeetingId(meetingId: string): void {
  if (!isValidMeetingId(meetingId)) throw new Error(`invalid meeting id: ${JSON.stringify(meetingId)}`);
}

function ignoreMissing(error: NodeJS.ErrnoException): void {
  if (error.code !== 'ENOENT') throw error;
}
