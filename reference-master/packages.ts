// Builds meeting packages (zips of PDFs) the way the real master does on activation: a fresh zip
// written to disk, whose bytes differ on every build (a random build id goes into each document and
// the zip comment), so a node that keeps a stale package is caught by comparing bytes.
import { createHash, randomBytes, randomFillSync, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ZipArchive } from 'archiver';

export interface PackageDocument {
  /** File name inside the zip; Chinese is fine (archiver sets the UTF-8 name flag). */
  name: string;
  /** Defaults to a small fake PDF naming the meeting and document. */
  content?: string | Uint8Array;
}

export interface BuildPackageOptions {
  /** Folder the zip is written to; it must exist. */
  dir: string;
  meetingId: string;
  title: string;
  /** Defaults to `defaultDocuments(title)`. */
  documents?: readonly PackageDocument[];
  /**
   * Pad the zip with a stored (uncompressed) file of random bytes so the whole zip is about this
   * big (within a few KiB). Used by benchmarks that need 200 MiB .. 2 GiB packages quickly.
   */
  packageSizeBytes?: number;
  /** Aborting deletes the partial file and rejects. */
  signal?: AbortSignal;
}

export interface BuiltPackage {
  path: string;
  size: number;
  sha256: string;
  /** Random id written into every document and the zip comment: differs on every build. */
  buildId: string;
}

const PADDING_CHUNK_BYTES = 1024 * 1024;
// Local headers, data descriptors, central directory and end record of a handful of entries
// stay well under this; it keeps the padded zip just under the requested size.
const ZIP_OVERHEAD_ALLOWANCE_BYTES = 4096;

export function defaultDocuments(title: string): PackageDocument[] {
  return [
    { name: `01_会议议程 Agenda.pdf` },
    { name: `02_工作报告 Work Report.pdf` },
    { name: `03_财务预算 Budget 2024.pdf` },
    { name: `04_${title.replace(/[\\/:*?"<>|]/g, '_')} 纪要 Minutes.pdf` },
  ];
}

/** A tiny PDF that most viewers open: one page with a line of text (ASCII only in the stream). */
export function fakePdf(meetingTitle: string, documentName: string, buildId: string): Buffer {
  const text = `Meeting document build ${buildId}`;
  const stream = `BT /F1 18 Tf 72 720 Td (${text}) Tj ET`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${Buffer.byteLength(stream)} >>\nstream\n${stream}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let body = '%PDF-1.4\n';
  // Title and name go in a comment as UTF-8: harmless to PDF readers, useful when debugging a zip.
  body += `% ${meetingTitle} / ${documentName}\n`;
  const offsets: number[] = [];
  objects.forEach((object, index) => {
    offsets.push(Buffer.byteLength(body));
    body += `${index + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xrefOffset = Buffer.byteLength(body);
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) body += `${String(offset).padStart(10, '0')} 00000 n \n`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /ID [<${buildId.replace(/-/g, '')}> <${buildId.replace(/-/g, '')}>] >>\n`;
  body += `startxref\n${xrefOffset}\n%%EOF\n`;
  return Buffer.from(body, 'utf8');
}

function randomPadding(totalBytes: number): Readable {
  let remaining = totalBytes;
  // A PDF header first so the padding entry still looks like a (scanned, opaque) PDF.
  let header: Buffer | null = Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1');
  return new Readable({
    highWaterMark: PADDING_CHUNK_BYTES,
    read() {
      if (remaining <= 0) {
        this.push(null);
        return;
      }
      if (header) {
        const piece = header.subarray(0, Math.min(header.length, remaining));
        header = null;
        remaining -= piece.length;
        this.push(piece);
        return;
      }
      const size = Math.min(PADDING_CHUNK_BYTES, remaining);
      remaining -= size;
      this.push(randomFillSync(Buffer.allocUnsafe(size)));
    },
  });
}

function documentBytes(content: string | Uint8Array): Buffer {
  return typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content);
}

export async function buildMeetingPackage(options: BuildPackageOptions): Promise<BuiltPackage> {
  options.signal?.throwIfAborted();
  const buildId = randomUUID();
  const path = join(options.dir, `meeting_${safeFileToken(options.meetingId)}_${buildId}.zip`);
  const documents = options.documents ?? defaultDocuments(options.title);

  const hash = createHash('sha256');
  let size = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });

  const archive = new ZipArchive({ zlib: { level: 6 }, comment: `meeting ${options.meetingId} build ${buildId}` });
  const written = pipeline(archive, measure, createWriteStream(path), { signal: options.signal });
  const now = new Date();
  let contentBytes = 0;
  for (const document of documents) {
    const bytes = document.content === undefined
      ? fakePdf(options.title, document.name, buildId)
      : documentBytes(document.content);
    contentBytes += bytes.length;
    archive.append(bytes, { name: document.name, date: now });
  }
  const paddingBytes = Math.max(
    0,
    Math.floor((options.packageSizeBytes ?? 0) - contentBytes - ZIP_OVERHEAD_ALLOWANCE_BYTES),
  );
  if (paddingBytes > 0) {
    archive.append(randomPadding(paddingBytes), { name: '99_附录扫描件 Appendix scans.pdf', date: now, store: true });
  }
  try {
    await Promise.all([archive.finalize(), written]);
  } catch (error) {
    archive.abort();
    await rm(path, { force: true });
    throw error;
  }
  return { path, size, sha256: hash.digest('hex'), buildId };
}

function safeFileToken(value: string): string {
  const cleaned = value.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64);
  return cleaned.length > 0 ? cleaned : randomBytes(4).toString('hex');
}
