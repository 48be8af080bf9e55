// Builds meeting packages the way the real master does (Python's zipfile on a file): the first
// entry is README.txt (deflated) naming the meeting, the build time and the files; then one entry
// per PDF, `agenda_N/<upload-uuid>.pdf`. A document's bytes are the same in every build (they are
// the uploaded file), so two builds differ in README.txt and its header's time: what identifies a build.
import { createCipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { localDateTime } from './local-time.ts';
import { ZipFileWriter } from './zip-writer.ts';

export interface PackageDocument {
  /** The uploaded file's name (README.txt lists it); Chinese is fine. */
  name: string;
  /** Defaults to a small fake PDF naming the meeting and document. */
  content?: string | Uint8Array;
  /** The upload's uuid (entry `agenda_N/<uploadId>.pdf`); default: a new one per build. */
  uploadId?: string;
}

export interface BuildPackageOptions {
  /** Folder the zip is written to; it must exist. */
  dir: string;
  meetingId: string;
  title: string;
  /** Defaults to `defaultDocuments(title)`. */
  documents?: readonly PackageDocument[];
  /**
   * Add a stored PDF of pseudo-random bytes so the whole zip is about this big (within a few
   * KiB). Used by benchmarks that need 200 MiB .. 2 GiB packages quickly.
   */
  packageSizeBytes?: number;
  /** The build time (README.txt's 生成时间 and every header's time); default now. */
  buildTime?: Date;
  /** Aborting deletes the partial file and rejects. */
  signal?: AbortSignal;
}

export interface BuiltPackage {
  path: string;
  size: number;
  sha256: string;
  /** Random id of this build (in the file name, not in the bytes). */
  buildId: string;
  /** Epoch ms of the build time, whole seconds. */
  builtAt: number;
  /** README.txt's text. */
  readme: string;
}

// Headers and central directory of a handful of entries stay well under this; it keeps the padded
// zip just under the requested size.
const ZIP_OVERHEAD_ALLOWANCE_BYTES = 4096;
const PADDING_CHUNK_BYTES = 1024 * 1024;
const PADDING_NAME = '99_附录扫描件 Appendix scans.pdf';
/** Upload id of the padding document when the caller gives none: stable per meeting. */
const PADDING_NAMESPACE = 'reference-master padding';

export function defaultDocuments(title: string): PackageDocument[] {
  return [
    { name: `01_会议议程 Agenda.pdf` },
    { name: `02_工作报告 Work Report.pdf` },
    { name: `03_财务预算 Budget 2024.pdf` },
    { name: `04_${title.replace(/[\\/:*?"<>|]/g, '_')} 纪要 Minutes.pdf` },
  ];
}

/** A tiny PDF that most viewers open: one page with a line of text (ASCII only in the stream). */
export function fakePdf(meetingTitle: string, documentName: string, contentId: string): Buffer {
  const text = `Meeting document ${contentId}`;
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
  const id = createHash('md5').update(contentId).digest('hex');
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) body += `${String(offset).padStart(10, '0')} 00000 n \n`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /ID [<${id}> <${id}>] >>\n`;
  body += `startxref\n${xrefOffset}\n%%EOF\n`;
  return Buffer.from(body, 'utf8');
}

/** `<name>` as README.txt lists it: the upload's name with a `.pdf` suffix. */
function pdfName(name: string): string {
  return name.toLowerCase().endsWith('.pdf') ? name : `${name}.pdf`;
}

export interface ReadmeFile {
  agenda: number;
  uploadId: string;
  name: string;
}

/** README.txt's text, in the real master's layout. */
export function packageReadme(meeting: { id: string; title: string }, builtAt: Date, files: readonly ReadmeFile[]): string {
  return [
    `会议名称: ${meeting.title}`,
    `会议ID: ${meeting.id}`,
    `生成时间: ${localDateTime(builtAt)}`,
    `PDF文件数量: ${files.length}`,
    '',
    '文件列表:',
    ...files.map((file) => `- agenda_${file.agenda}/${file.uploadId}_${pdfName(file.name)}`),
    '',
  ].join('\n');
}

/**
 * Pseudo-random, incompressible, and the same for the same id (AES-CTR keystream): the padding
 * document is one uploaded file, identical in every build, and can be generated twice.
 */
function* paddingChunks(totalBytes: number, id: string): Generator<Buffer> {
  const key = createHash('sha256').update(id).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  // A PDF header first so the padding entry still looks like a (scanned, opaque) PDF.
  const header = Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1').subarray(0, totalBytes);
  let remaining = totalBytes - header.length;
  if (header.length > 0) yield header;
  const zeros = Buffer.alloc(PADDING_CHUNK_BYTES);
  while (remaining > 0) {
    const size = Math.min(PADDING_CHUNK_BYTES, remaining);
    remaining -= size;
    yield cipher.update(zeros.subarray(0, size));
  }
}

function documentBytes(content: string | Uint8Array): Buffer {
  return typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content);
}

export async function buildMeetingPackage(options: BuildPackageOptions): Promise<BuiltPackage> {
  options.signal?.throwIfAborted();
  const buildId = randomUUID();
  const path = join(options.dir, `meeting_${safeFileToken(options.meetingId)}_${buildId}.zip`);
  // zipfile stores whole seconds (and the header even-second DOS time).
  const builtAt = new Date(Math.floor((options.buildTime ?? new Date()).getTime() / 1000) * 1000);
  const documents = (options.documents ?? defaultDocuments(options.title)).map((document, index) => {
    const uploadId = document.uploadId ?? randomUUID();
    const bytes = document.content === undefined
      ? fakePdf(options.title, document.name, uploadId)
      : documentBytes(document.content);
    return { agenda: index + 1, uploadId, name: document.name, bytes };
  });
  const contentBytes = documents.reduce((sum, document) => sum + document.bytes.length, 0);
  const paddingBytes = Math.max(
    0,
    Math.floor((options.packageSizeBytes ?? 0) - contentBytes - ZIP_OVERHEAD_ALLOWANCE_BYTES),
  );
  const padding = paddingBytes > 0
    ? { agenda: documents.length + 1, uploadId: uuidFrom(`${PADDING_NAMESPACE} ${options.meetingId} ${paddingBytes}`), name: PADDING_NAME }
    : null;
  const files: ReadmeFile[] = [...documents, ...(padding ? [padding] : [])];
  const readme = packageReadme({ id: options.meetingId, title: options.title }, builtAt, files);

  const file = await open(path, 'wx');
  try {
    const zip = new ZipFileWriter(file);
    await zip.addBuffer('README.txt', Buffer.from(readme, 'utf8'), { date: builtAt, deflate: true });
    for (const document of documents) {
      options.signal?.throwIfAborted();
      await zip.addBuffer(`agenda_${document.agenda}/${document.uploadId}.pdf`, document.bytes, { date: builtAt, deflate: true });
    }
    if (padding) {
      const signal = options.signal;
      await zip.addStoredStream(
        `agenda_${padding.agenda}/${padding.uploadId}.pdf`,
        () => paddingChunks(paddingBytes, padding.uploadId),
        { date: builtAt, ...(signal ? { signal } : {}) },
      );
    }
    const { size, sha256 } = await zip.finish();
    await file.close();
    return { path, size, sha256, buildId, builtAt: builtAt.getTime(), readme };
  } catch (error) {
    await file.close().catch(() => undefined);
    await rm(path, { force: true });
    throw error;
  }
}

/** A uuid-shaped id derived from text (stable across builds). */
function uuidFrom(text: string): string {
  const hex = createHash('sha256').update(text).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function safeFileToken(value: string): string {
  const cleaned = value.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64);
  return cleaned.length > 0 ? cleaned : randomBytes(4).toString('hex');
}
