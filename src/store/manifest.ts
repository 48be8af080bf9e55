import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from './fs-durability.ts';
import { asPackageSource, type PackageSource } from './package-state.ts';

export const MANIFEST_FILE = 'manifest.json';

/** What manifest.json beside each package.zip records. */
export interface PackageManifest {
  version: 1;
  meetingId: string;
  sha256: string;
  size: number;
  /** ISO time the bytes were fetched (or adopted). */
  fetchedAt: string;
  /** The master's status token known when the package was fetched; null for adopted packages. */
  token: string | null;
  title: string;
  /**
   * 'preheat': fetched before its meeting started (not served, not reported synced, until the
   * start confirms its documents: then 'confirmed', with standsFor).
   */
  source: PackageSource;
  /** sha256 of the leading bytes up to the end of the zip's first entry: the build (zip-lead.ts). */
  buildId: string;
  /** sha256 of README.txt without its build-time line: the documents; null if the zip has no README first. */
  documentsId: string | null;
  /**
   * The master build these bytes stand for when they are of another build with the same documents
   * (another build time): a confirmed preheat's start build, or the build a sibling asked its
   * seed for and got that seed's equivalent bytes. Later probes compare against it. null otherwise.
   */
  standsFor: string | null;
  /** Identity of package.zip this manifest describes: a mismatch after a crash forces re-verification. */
  inode: number;
  mtimeMs: number;
}

/** Fields under the names earlier versions wrote them. */
interface OlderFields {
  /** Up to 0.1.0: the name of `standsFor`. */
  confirmedBuildId?: unknown;
}

/** `standsFor`, or the same field under its earlier name (a node upgraded in place keeps it). */
function recordedStandsFor(parsed: Partial<PackageManifest> & OlderFields): string | null {
  if (typeof parsed.standsFor === 'string') return parsed.standsFor;
  return typeof parsed.confirmedBuildId === 'string' ? parsed.confirmedBuildId : null;
}

/** Writes a meeting folder's manifest atomically (temp file, fsync, rename). */
export async function writeManifest(dir: string, manifest: PackageManifest): Promise<void> {
  await writeFileAtomic(path.join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, randomBytes(4).toString('hex'));
}

/** A manifest as written by this or an earlier version; null when missing, unreadable or not one. */
export async function readManifest(file: string): Promise<PackageManifest | null> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<PackageManifest> & OlderFields;
    if (
      parsed.version === 1 &&
      typeof parsed.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(parsed.sha256) &&
      typeof parsed.size === 'number' &&
      typeof parsed.inode === 'number' &&
      typeof parsed.mtimeMs === 'number'
    ) {
      return {
        version: 1,
        meetingId: String(parsed.meetingId),
        sha256: parsed.sha256,
        size: parsed.size,
        fetchedAt: String(parsed.fetchedAt ?? new Date(0).toISOString()),
        token: typeof parsed.token === 'string' ? parsed.token : null,
        title: typeof parsed.title === 'string' ? parsed.title : '',
        source: asPackageSource(parsed.source) ?? 'master',
        // Empty: an older manifest; the scan fills it in from the file.
        buildId: typeof parsed.buildId === 'string' ? parsed.buildId : '',
        documentsId: typeof parsed.documentsId === 'string' ? parsed.documentsId : null,
        standsFor: recordedStandsFor(parsed),
        inode: parsed.inode,
        mtimeMs: parsed.mtimeMs,
      };
    }
  } catch {
    // Missing or unreadable manifest: the caller re-verifies the package.
  }
  return null;
}
