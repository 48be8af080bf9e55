/**
 * The identity of a package build, read from the first bytes of its zip.
 *
 * The master builds each package with README.txt as the zip's first entry, and that entry holds
 * the build time (in its local header and in its text) and one line per document (MASTER_API.md,
 * "How the master builds a package"). So the bytes up to the end of the first entry identify the
 * build, and README.txt without its build-time line identifies the documents. A node compares
 * these with the leading bytes of the master's stream (a probe) instead of downloading it again.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';

/** Most bytes a probe reads: the first entry (README.txt) is a few KiB. */
export const LEAD_CAP_BYTES = 64 * 1024;

const LOCAL_HEADER = 0x04034b50;
const LOCAL_HEADER_BYTES = 30;
const DATA_DESCRIPTOR_FLAG = 0x0008;
/** Any record that may follow the first entry's data: the next entry, or the central directory. */
const NEXT_RECORD = [Buffer.from('PK\x03\x04', 'latin1'), Buffer.from('PK\x01\x02', 'latin1')];
/**
 * The README's build-time line: `生成时间: 2026-12-02 16:11:56` (either colon). Written with escapes
 * (生成时间, the full-width colon): start.js must stay Latin-1 (scripts/build.mjs).
 */
const BUILD_TIME_LINE = /^\s*\u751f\u6210\u65f6\u95f4\s*[:\uff1a].*$/gmu;

export interface BuildIdentity {
  /** sha256 of the leading bytes that identify the build (up to the end of the first entry). */
  buildId: string;
  /** sha256 of README.txt without its build-time line; null when the first entry is not a readable README.txt. */
  documentsId: string | null;
  /** Bytes the identity covers: the end of the first entry, or LEAD_CAP_BYTES when it ends later. */
  length: number;
}

/**
 * Where the zip's first entry ends (the offset of the next record), or null when `lead` does not
 * hold it yet. A lead that does not start with a local file header has no first entry: its
 * identity is then its first LEAD_CAP_BYTES.
 */
export function firstEntryEnd(lead: Buffer): number | null {
  if (lead.length < LOCAL_HEADER_BYTES) return null;
  if (lead.readUInt32LE(0) !== LOCAL_HEADER) return LEAD_CAP_BYTES <= lead.length ? LEAD_CAP_BYTES : null;
  const flags = lead.readUInt16LE(6);
  const compressedSize = lead.readUInt32LE(18);
  const dataStart = LOCAL_HEADER_BYTES + lead.readUInt16LE(26) + lead.readUInt16LE(28);
  if (!(flags & DATA_DESCRIPTOR_FLAG) && compressedSize !== 0xffffffff) {
    const end = dataStart + compressedSize;
    return end <= lead.length ? end : null;
  }
  // Sizes in a data descriptor after the data (a streamed zip): the entry ends where the next
  // record starts. A signature inside compressed data would end it early, which only makes the
  // identity shorter, and both sides compute it the same way from the same bytes.
  let end = -1;
  for (const signature of NEXT_RECORD) {
    const at = lead.indexOf(signature, dataStart);
    if (at >= 0 && (end < 0 || at < end)) end = at;
  }
  return end >= 0 ? end : null;
}

/**
 * The identity of the build whose first bytes are `lead`, or null when more bytes are needed (and
 * the cap is not reached). `final`: the stream ended at `lead`, so what is there is all there is.
 */
export function buildIdentity(lead: Buffer, final = false): BuildIdentity | null {
  const entryEnd = firstEntryEnd(lead);
  const whole = entryEnd !== null && entryEnd <= LEAD_CAP_BYTES;
  let end: number;
  if (whole) end = entryEnd;
  else if (lead.length >= LEAD_CAP_BYTES) end = LEAD_CAP_BYTES;
  else if (final) end = lead.length;
  else return null;
  // Documents are identified only by a whole README: a cut one could hide a replaced document.
  const readme = whole ? readmeText(lead, end) : null;
  return {
    buildId: sha256(lead.subarray(0, end)),
    documentsId: readme === null ? null : sha256(Buffer.from(readme.replace(BUILD_TIME_LINE, '').replace(/\r\n/g, '\n'), 'utf8')),
    length: end,
  };
}

/** The text of README.txt when it is the first entry of `lead` (stored or deflated), else null. */
export function firstReadme(lead: Buffer): string | null {
  const end = firstEntryEnd(lead);
  return end === null ? null : readmeText(lead, end);
}

function readmeText(lead: Buffer, end: number): string | null {
  if (lead.length < LOCAL_HEADER_BYTES || lead.readUInt32LE(0) !== LOCAL_HEADER) return null;
  const nameLength = lead.readUInt16LE(26);
  const name = lead.subarray(LOCAL_HEADER_BYTES, LOCAL_HEADER_BYTES + nameLength).toString('utf8');
  if (name !== 'README.txt') return null;
  const data = lead.subarray(LOCAL_HEADER_BYTES + nameLength + lead.readUInt16LE(28), end);
  const method = lead.readUInt16LE(8);
  try {
    if (method === 0) return data.toString('utf8');
    // With a data descriptor, `data` ends with the descriptor: inflate stops at the stream's end.
    if (method === 8) return inflateRawSync(data, { finishFlush: 2 /* Z_SYNC_FLUSH */ }).toString('utf8');
  } catch {
    // A damaged entry identifies no documents; the build identity still compares bytes.
  }
  return null;
}

/** Reads the leading bytes of a stored package and computes their identity. */
export async function fileIdentity(file: string): Promise<BuildIdentity> {
  const handle = await open(file, 'r');
  try {
    const lead = Buffer.alloc(LEAD_CAP_BYTES);
    let length = 0;
    while (length < lead.length) {
      const { bytesRead } = await handle.read(lead, length, lead.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buildIdentity(lead.subarray(0, length), true) as BuildIdentity;
  } finally {
    await handle.close();
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
