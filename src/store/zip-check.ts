import { fstat, read } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';

export type ZipCheckResult =
  | { ok: true; entries: number; centralDirectoryOffset: number; centralDirectorySize: number }
  | { ok: false; reason: string };

const EOCD_SIGNATURE = 0x06054b50;
const EOCD_SIZE = 22;
const MAX_COMMENT_LENGTH = 0xffff;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
/** Fixed part of the ZIP64 EOCD record; its size field counts everything after the first 12 bytes. */
const ZIP64_EOCD_MIN_SIZE = 56;
const ZIP64_EOCD_LEADING_BYTES = 12;
const CENTRAL_HEADER_SIGNATURE = 0x02014b50;
const CENTRAL_HEADER_SIZE = 46;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const ZIP64_EXTRA_FIELD_ID = 0x0001;
const MAGIC_16 = 0xffff;
const MAGIC_32 = 0xffffffff;
/**
 * One central header is at most 46 + 3 * 65535 bytes, so a 1 MiB window always holds a whole header
 * while keeping memory bounded for central directories of archives with millions of entries.
 */
const CENTRAL_DIRECTORY_WINDOW = 1024 * 1024;

const readFd = promisify(read);
const fstatFd = promisify(fstat);

/** Raised when the file ends before fstat said it would, i.e. it changed under us; reported as not ok. */
class ShortReadError extends Error {}

/** Thrown from the parsing helpers for bad content; converted into `{ ok: false }` at the top. */
class ZipInvalid extends Error {}

interface RandomAccessFile {
  readonly size: number;
  readExact(position: number, length: number): Promise<Buffer>;
  readInto(buffer: Buffer, length: number, position: number): Promise<void>;
}

async function openRandomAccess(fd: number): Promise<RandomAccessFile> {
  const { size } = await fstatFd(fd);
  const readInto = async (buffer: Buffer, length: number, position: number): Promise<void> => {
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await readFd(fd, buffer, filled, length - filled, position + filled);
      if (bytesRead === 0) throw new ShortReadError();
      filled += bytesRead;
    }
  };
  return {
    size,
    readInto,
    async readExact(position, length) {
      const buffer = Buffer.alloc(length);
      await readInto(buffer, length, position);
      return buffer;
    },
  };
}

/** Checks the zip at `path` (opened read-only) or an already-open fd. Never throws for bad content; rejects only on I/O errors. */
export async function checkZipFile(pathOrFd: string | number): Promise<ZipCheckResult> {
  if (typeof pathOrFd === 'number') return checkOpenFd(pathOrFd);
  const handle = await open(pathOrFd, 'r');
  try {
    return await checkOpenFd(handle.fd);
  } finally {
    await handle.close();
  }
}

async function checkOpenFd(fd: number): Promise<ZipCheckResult> {
  try {
    const file = await openRandomAccess(fd);
    return await checkZip(file);
  } catch (error) {
    if (error instanceof ZipInvalid) return { ok: false, reason: error.message };
    if (error instanceof ShortReadError) {
      return { ok: false, reason: 'file ended early while reading (changed during the check?)' };
    }
    throw error;
  }
}

function invalid(reason: string): never {
  throw new ZipInvalid(reason);
}

function readUInt64(buffer: Buffer, offset: number, what: string): number {
  const value = buffer.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) invalid(`${what} is implausibly large (${value})`);
  return Number(value);
}

interface EndRecords {
  /** Where the end records begin: the ZIP64 EOCD record if present, else the classic EOCD. */
  endRecordsOffset: number;
  diskNumber: number;
  centralDirectoryDisk: number;
  entriesOnDisk: number;
  totalEntries: number;
  centralDirectorySize: number;
  centralDirectoryOffset: number;
}

async function checkZip(file: RandomAccessFile): Promise<ZipCheckResult> {
  if (file.size < EOCD_SIZE) invalid(`file is ${file.size} bytes, smaller than an empty zip (22 bytes)`);

  const end = await readEndRecords(file);
  if (end.diskNumber !== 0 || end.centralDirectoryDisk !== 0) {
    invalid(`multi-disk archive (disk ${end.diskNumber}, central directory on disk ${end.centralDirectoryDisk})`);
  }
  if (end.entriesOnDisk !== end.totalEntries) {
    invalid(`entries on this disk (${end.entriesOnDisk}) differ from total entries (${end.totalEntries})`);
  }
  const centralDirectoryEnd = end.centralDirectoryOffset + end.centralDirectorySize;
  if (centralDirectoryEnd > file.size) {
    invalid(`central directory ends at ${centralDirectoryEnd}, beyond the file size ${file.size}`);
  }
  if (centralDirectoryEnd !== end.endRecordsOffset) {
    invalid(
      `central directory ends at ${centralDirectoryEnd} but the end records start at ${end.endRecordsOffset}`,
    );
  }

  await walkCentralDirectory(file, end);
  return {
    ok: true,
    entries: end.totalEntries,
    centralDirectoryOffset: end.centralDirectoryOffset,
    centralDirectorySize: end.centralDirectorySize,
  };
}

async function readEndRecords(file: RandomAccessFile): Promise<EndRecords> {
  const tailLength = Math.min(file.size, MAX_COMMENT_LENGTH + EOCD_SIZE);
  const tailStart = file.size - tailLength;
  const tail = await file.readExact(tailStart, tailLength);

  // The comment may itself contain the signature bytes, so keep scanning past candidates whose
  // comment length does not land exactly on EOF.
  let eocdInTail = -1;
  let sawMisplacedSignature = false;
  for (let i = tailLength - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) !== EOCD_SIGNATURE) continue;
    if (i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tailLength) {
      eocdInTail = i;
      break;
    }
    sawMisplacedSignature = true;
  }
  if (eocdInTail < 0) {
    invalid(
      sawMisplacedSignature
        ? 'end-of-central-directory record does not end at end of file (trailing data or truncated comment?)'
        : 'no end-of-central-directory record (truncated?)',
    );
  }

  const eocd = tail.subarray(eocdInTail, eocdInTail + EOCD_SIZE);
  const eocdOffset = tailStart + eocdInTail;
  const classic: EndRecords = {
    endRecordsOffset: eocdOffset,
    diskNumber: eocd.readUInt16LE(4),
    centralDirectoryDisk: eocd.readUInt16LE(6),
    entriesOnDisk: eocd.readUInt16LE(8),
    totalEntries: eocd.readUInt16LE(10),
    centralDirectorySize: eocd.readUInt32LE(12),
    centralDirectoryOffset: eocd.readUInt32LE(16),
  };
  const hasZip64Markers =
    classic.diskNumber === MAGIC_16 ||
    classic.centralDirectoryDisk === MAGIC_16 ||
    classic.entriesOnDisk === MAGIC_16 ||
    classic.totalEntries === MAGIC_16 ||
    classic.centralDirectorySize === MAGIC_32 ||
    classic.centralDirectoryOffset === MAGIC_32;

  const locatorOffset = eocdOffset - ZIP64_LOCATOR_SIZE;
  const locator = locatorOffset >= 0 ? await file.readExact(locatorOffset, ZIP64_LOCATOR_SIZE) : undefined;
  if (locator === undefined || locator.readUInt32LE(0) !== ZIP64_LOCATOR_SIGNATURE) {
    if (hasZip64Markers) invalid('end-of-central-directory record has ZIP64 markers but no ZIP64 locator precedes it');
    return classic;
  }
  return readZip64EndRecord(file, locator, locatorOffset);
}

async function readZip64EndRecord(
  file: RandomAccessFile,
  locator: Buffer,
  locatorOffset: number,
): Promise<EndRecords> {
  const zip64Disk = locator.readUInt32LE(4);
  const zip64Offset = readUInt64(locator, 8, 'ZIP64 end record offset');
  const totalDisks = locator.readUInt32LE(16);
  // Some writers store 0 rather than 1 for a single-disk archive.
  if (zip64Disk !== 0 || totalDisks > 1) {
    invalid(`multi-disk archive (ZIP64 locator: record on disk ${zip64Disk}, ${totalDisks} disks)`);
  }
  if (zip64Offset + ZIP64_EOCD_MIN_SIZE > locatorOffset) {
    invalid(`ZIP64 end record offset ${zip64Offset} does not leave room before its locator at ${locatorOffset}`);
  }
  const record = await file.readExact(zip64Offset, ZIP64_EOCD_MIN_SIZE);
  if (record.readUInt32LE(0) !== ZIP64_EOCD_SIGNATURE) {
    invalid(`no ZIP64 end-of-central-directory record at offset ${zip64Offset}`);
  }
  const recordSize = readUInt64(record, 4, 'ZIP64 end record size');
  if (zip64Offset + ZIP64_EOCD_LEADING_BYTES + recordSize !== locatorOffset) {
    invalid(`ZIP64 end record at ${zip64Offset} (size ${recordSize}) does not end at its locator (${locatorOffset})`);
  }
  return {
    endRecordsOffset: zip64Offset,
    diskNumber: record.readUInt32LE(16),
    centralDirectoryDisk: record.readUInt32LE(20),
    entriesOnDisk: readUInt64(record, 24, 'ZIP64 entries on disk'),
    totalEntries: readUInt64(record, 32, 'ZIP64 total entries'),
    centralDirectorySize: readUInt64(record, 40, 'ZIP64 central directory size'),
    centralDirectoryOffset: readUInt64(record, 48, 'ZIP64 central directory offset'),
  };
}

/** Reads forward through [start, end) keeping only a bounded window in memory. */
class WindowedReader {
  private readonly window: Buffer;
  private windowStart = 0;
  private windowLength = 0;

  constructor(
    private readonly file: RandomAccessFile,
    private readonly end: number,
    windowSize: number,
  ) {
    this.window = Buffer.alloc(windowSize);
  }

  /** Returns a view of `length` bytes at `position`, valid until the next call. Caller ensures position+length ≤ end. */
  async view(position: number, length: number): Promise<Buffer> {
    const windowEnd = this.windowStart + this.windowLength;
    if (position < this.windowStart || position + length > windowEnd) {
      const fillLength = Math.min(this.window.length, this.end - position);
      await this.file.readInto(this.window, fillLength, position);
      this.windowStart = position;
      this.windowLength = fillLength;
    }
    const start = position - this.windowStart;
    return this.window.subarray(start, start + length);
  }
}

async function walkCentralDirectory(file: RandomAccessFile, end: EndRecords): Promise<void> {
  const { centralDirectoryOffset, centralDirectorySize, totalEntries } = end;
  const centralDirectoryEnd = centralDirectoryOffset + centralDirectorySize;
  const reader = new WindowedReader(
    file,
    centralDirectoryEnd,
    Math.max(1, Math.min(centralDirectorySize, CENTRAL_DIRECTORY_WINDOW)),
  );

  let position = centralDirectoryOffset;
  let firstLocalHeaderOffset: number | undefined;
  for (let index = 0; index < totalEntries; index++) {
    if (position + CENTRAL_HEADER_SIZE > centralDirectoryEnd) {
      invalid(`central directory ends after ${index} of ${totalEntries} entries`);
    }
    const fixed = await reader.view(position, CENTRAL_HEADER_SIZE);
    if (fixed.readUInt32LE(0) !== CENTRAL_HEADER_SIGNATURE) {
      invalid(`entry ${index}: bad central directory header signature at offset ${position}`);
    }
    const compressedSize = fixed.readUInt32LE(20);
    const uncompressedSize = fixed.readUInt32LE(24);
    const nameLength = fixed.readUInt16LE(28);
    const extraLength = fixed.readUInt16LE(30);
    const commentLength = fixed.readUInt16LE(32);
    const diskStart = fixed.readUInt16LE(34);
    const localHeaderOffset32 = fixed.readUInt32LE(42);
    const headerLength = CENTRAL_HEADER_SIZE + nameLength + extraLength + commentLength;
    if (position + headerLength > centralDirectoryEnd) {
      invalid(`entry ${index}: central directory header runs past the end of the central directory`);
    }

    let localHeaderOffset = localHeaderOffset32;
    if (localHeaderOffset32 === MAGIC_32 || diskStart === MAGIC_16) {
      const extra = await reader.view(position + CENTRAL_HEADER_SIZE + nameLength, extraLength);
      const zip64 = readZip64ExtraField(extra, {
        uncompressedSize: uncompressedSize === MAGIC_32,
        compressedSize: compressedSize === MAGIC_32,
        localHeaderOffset: localHeaderOffset32 === MAGIC_32,
        diskStart: diskStart === MAGIC_16,
      });
      if (zip64 === undefined) invalid(`entry ${index}: ZIP64 markers without a usable ZIP64 extra field`);
      if (zip64.localHeaderOffset !== undefined) localHeaderOffset = zip64.localHeaderOffset;
      if (zip64.diskStart !== undefined && zip64.diskStart !== 0) {
        invalid(`entry ${index}: starts on disk ${zip64.diskStart}`);
      }
    } else if (diskStart !== 0) {
      invalid(`entry ${index}: starts on disk ${diskStart}`);
    }
    if (localHeaderOffset >= centralDirectoryOffset) {
      invalid(`entry ${index}: local header offset ${localHeaderOffset} is not before the central directory`);
    }
    firstLocalHeaderOffset ??= localHeaderOffset;
    position += headerLength;
  }
  if (position !== centralDirectoryEnd) {
    invalid(
      `central directory has ${centralDirectoryEnd - position} bytes left after ${totalEntries} entries`,
    );
  }

  if (firstLocalHeaderOffset !== undefined) {
    const signature = (await file.readExact(firstLocalHeaderOffset, 4)).readUInt32LE(0);
    if (signature !== LOCAL_HEADER_SIGNATURE) {
      invalid(`entry 0: no local file header at offset ${firstLocalHeaderOffset}`);
    }
  }
}

interface Zip64FieldsPresent {
  uncompressedSize: boolean;
  compressedSize: boolean;
  localHeaderOffset: boolean;
  diskStart: boolean;
}

/** Per APPNOTE 4.5.3 the ZIP64 extra field holds only the fields whose 32/16-bit slot is saturated, in this order. */
function readZip64ExtraField(
  extra: Buffer,
  present: Zip64FieldsPresent,
): { localHeaderOffset?: number; diskStart?: number } | undefined {
  let blockStart = 0;
  while (blockStart + 4 <= extra.length) {
    const id = extra.readUInt16LE(blockStart);
    const dataLength = extra.readUInt16LE(blockStart + 2);
    const dataStart = blockStart + 4;
    if (dataStart + dataLength > extra.length) return undefined;
    if (id === ZIP64_EXTRA_FIELD_ID) {
      const data = extra.subarray(dataStart, dataStart + dataLength);
      const needed =
        (present.uncompressedSize ? 8 : 0) +
        (present.compressedSize ? 8 : 0) +
        (present.localHeaderOffset ? 8 : 0) +
        (present.diskStart ? 4 : 0);
      if (data.length < needed) return undefined;
      let cursor = (present.uncompressedSize ? 8 : 0) + (present.compressedSize ? 8 : 0);
      const result: { localHeaderOffset?: number; diskStart?: number } = {};
      if (present.localHeaderOffset) {
        result.localHeaderOffset = readUInt64(data, cursor, 'ZIP64 local header offset');
        cursor += 8;
      }
      if (present.diskStart) result.diskStart = data.readUInt32LE(cursor);
      return result;
    }
    blockStart = dataStart + dataLength;
  }
  return undefined;
}
