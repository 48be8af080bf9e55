// A zip writer that lays out bytes the way Python's zipfile does on a seekable file (what the real
// master uses): every local header carries the entry's real CRC-32 and sizes (general purpose bit 3
// clear, no data descriptors). archiver cannot do this: it always gives a deflated or streamed
// entry a data descriptor and zeros in its local header.
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { crc32, deflateRaw } from 'node:zlib';

const LOCAL_HEADER_SIGNATURE = 0x04034b50;
const CENTRAL_HEADER_SIGNATURE = 0x02014b50;
const END_RECORD_SIGNATURE = 0x06054b50;
const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIZE = 46;
const END_RECORD_SIZE = 22;
/** Bit 11: names are UTF-8 (Python sets it for non-ASCII names). */
const UTF8_NAME_FLAG = 0x0800;
const METHOD_STORED = 0;
const METHOD_DEFLATED = 8;
const VERSION_NEEDED = 20;
/** Made by: UNIX (3), spec 2.0, like zipfile on Linux. */
const VERSION_MADE_BY = (3 << 8) | 20;
/** The reference writes no zip64: its packages stay well under 4 GiB. */
const MAX_ZIP32 = 0xffffffff;
/** Offset of the CRC-32 field in a local header; the two sizes follow it. */
const LOCAL_CRC_OFFSET = 14;

/** Off the event loop: a big document must not stall the master's other answers. */
const deflateRawAsync = promisify(deflateRaw);

interface CentralEntry {
  name: Buffer;
  flags: number;
  method: number;
  dosTime: number;
  crc: number;
  compressedSize: number;
  size: number;
  offset: number;
  externalAttributes: number;
}

export interface ZipWriterResult {
  size: number;
  sha256: string;
}

/** DOS date and time (local time, 2-second resolution) as one 32-bit value: date high, time low. */
export function dosDateTime(date: Date): number {
  const year = Math.max(1980, date.getFullYear());
  const dosDate = ((year - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate();
  const dosTime = (date.getHours() << 11) | (date.getMinutes() << 5) | Math.floor(date.getSeconds() / 2);
  return ((dosDate << 16) | dosTime) >>> 0;
}

/** Writes a zip sequentially to an open file, hashing the bytes as they go. */
export class ZipFileWriter {
  readonly #file: FileHandle;
  readonly #hash: Hash = createHash('sha256');
  readonly #entries: CentralEntry[] = [];
  #offset = 0;

  constructor(file: FileHandle) {
    this.#file = file;
  }

  /** An entry whose bytes are in memory: deflated (or stored), header complete from the start. */
  async addBuffer(name: string, data: Uint8Array, options: { date: Date; deflate: boolean }): Promise<void> {
    const body = options.deflate ? await deflateRawAsync(data, { level: 6 }) : data;
    const entry = this.#entry(name, options.date, options.deflate ? METHOD_DEFLATED : METHOD_STORED);
    entry.crc = crc32(data);
    entry.size = data.length;
    entry.compressedSize = body.length;
    await this.#write(Buffer.concat([localHeader(entry), body]));
  }

  /**
   * A stored entry whose bytes come from `chunks` (too big to hold). `makeChunks` runs twice: once
   * to learn the CRC, once to write and hash, so the header is final before any byte is hashed.
   * It must yield the same bytes both times.
   */
  async addStoredStream(
    name: string,
    makeChunks: () => Iterable<Buffer> | AsyncIterable<Buffer>,
    options: { date: Date; signal?: AbortSignal },
  ): Promise<void> {
    const entry = this.#entry(name, options.date, METHOD_STORED);
    let crc = 0;
    let size = 0;
    for await (const chunk of makeChunks()) {
      options.signal?.throwIfAborted();
      crc = crc32(chunk, crc);
      size += chunk.length;
    }
    entry.crc = crc;
    entry.size = size;
    entry.compressedSize = size;
    await this.#write(localHeader(entry));
    for await (const chunk of makeChunks()) {
      options.signal?.throwIfAborted();
      await this.#write(chunk);
    }
  }

  async finish(): Promise<ZipWriterResult> {
    const centralOffset = this.#offset;
    for (const entry of this.#entries) await this.#write(centralHeader(entry));
    const centralSize = this.#offset - centralOffset;
    const end = Buffer.alloc(END_RECORD_SIZE);
    end.writeUInt32LE(END_RECORD_SIGNATURE, 0);
    end.writeUInt16LE(this.#entries.length, 8);
    end.writeUInt16LE(this.#entries.length, 10);
    end.writeUInt32LE(centralSize, 12);
    end.writeUInt32LE(centralOffset, 16);
    await this.#write(end);
    return { size: this.#offset, sha256: this.#hash.digest('hex') };
  }

  #entry(name: string, date: Date, method: number): CentralEntry {
    const nameBytes = Buffer.from(name, 'utf8');
    // Python sets the UTF-8 flag only for names that are not plain ASCII.
    const ascii = nameBytes.length === name.length;
    const entry: CentralEntry = {
      name: nameBytes,
      flags: ascii ? 0 : UTF8_NAME_FLAG,
      method,
      dosTime: dosDateTime(date),
      crc: 0,
      compressedSize: 0,
      size: 0,
      offset: this.#offset,
      // -rw-r--r-- regular file, as zipfile.writestr gives.
      externalAttributes: ((0o100644 << 16) >>> 0),
    };
    this.#entries.push(entry);
    return entry;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    if (this.#offset + bytes.length > MAX_ZIP32) throw new Error('package too large: the reference master writes no zip64');
    this.#hash.update(bytes);
    let written = 0;
    while (written < bytes.length) {
      const { bytesWritten } = await this.#file.write(bytes, written, bytes.length - written, this.#offset + written);
      written += bytesWritten;
    }
    this.#offset += bytes.length;
  }
}

function localHeader(entry: CentralEntry): Buffer {
  const header = Buffer.alloc(LOCAL_HEADER_SIZE);
  header.writeUInt32LE(LOCAL_HEADER_SIGNATURE, 0);
  header.writeUInt16LE(VERSION_NEEDED, 4);
  header.writeUInt16LE(entry.flags, 6);
  header.writeUInt16LE(entry.method, 8);
  header.writeUInt32LE(entry.dosTime, 10);
  header.writeUInt32LE(entry.crc, LOCAL_CRC_OFFSET);
  header.writeUInt32LE(entry.compressedSize, LOCAL_CRC_OFFSET + 4);
  header.writeUInt32LE(entry.size, LOCAL_CRC_OFFSET + 8);
  header.writeUInt16LE(entry.name.length, 26);
  header.writeUInt16LE(0, 28);
  return Buffer.concat([header, entry.name]);
}

function centralHeader(entry: CentralEntry): Buffer {
  const header = Buffer.alloc(CENTRAL_HEADER_SIZE);
  header.writeUInt32LE(CENTRAL_HEADER_SIGNATURE, 0);
  header.writeUInt16LE(VERSION_MADE_BY, 4);
  header.writeUInt16LE(VERSION_NEEDED, 6);
  header.writeUInt16LE(entry.flags, 8);
  header.writeUInt16LE(entry.method, 10);
  header.writeUInt32LE(entry.dosTime, 12);
  header.writeUInt32LE(entry.crc, 16);
  header.writeUInt32LE(entry.compressedSize, 20);
  header.writeUInt32LE(entry.size, 24);
  header.writeUInt16LE(entry.name.length, 28);
  // extra, comment, disk start, internal attributes: all zero
  header.writeUInt32LE(entry.externalAttributes, 38);
  header.writeUInt32LE(entry.offset, 42);
  return Buffer.concat([header, entry.name]);
}
