// Reads a whole zip held in memory, local headers included: what tests (and a curious demo) need to
// check a package's layout. Not a general reader: no zip64, no encryption.
import { inflateRawSync } from 'node:zlib';

export interface ZipEntry {
  name: string;
  method: number;
  /** General purpose flags of the local header (bit 3: sizes in a data descriptor). */
  flags: number;
  /** DOS date/time of the local header. */
  dosTime: number;
  /** CRC-32 and sizes as the local header carries them. */
  localCrc: number;
  localCompressedSize: number;
  localSize: number;
  crc: number;
  compressedSize: number;
  size: number;
  /** Offset of the local header; the entry's bytes end at dataEnd. */
  offset: number;
  dataEnd: number;
  data: Buffer;
}

export function readZip(zip: Buffer): ZipEntry[] {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (end < 0) throw new Error('no end of central directory');
  const count = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i += 1) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`bad central header at ${at}`);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const offset = zip.readUInt32LE(at + 42);
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    if (zip.readUInt32LE(offset) !== 0x04034b50) throw new Error(`bad local header at ${offset}`);
    const dataStart = offset + 30 + zip.readUInt16LE(offset + 26) + zip.readUInt16LE(offset + 28);
    const raw = zip.subarray(dataStart, dataStart + compressedSize);
    entries.push({
      name: zip.subarray(at + 46, at + 46 + nameLength).toString('utf8'),
      method,
      flags: zip.readUInt16LE(offset + 6),
      dosTime: zip.readUInt32LE(offset + 10),
      localCrc: zip.readUInt32LE(offset + 14),
      localCompressedSize: zip.readUInt32LE(offset + 18),
      localSize: zip.readUInt32LE(offset + 22),
      crc: zip.readUInt32LE(at + 16),
      compressedSize,
      size: zip.readUInt32LE(at + 24),
      offset,
      dataEnd: dataStart + compressedSize,
      data: method === 8 ? inflateRawSync(raw) : Buffer.from(raw),
    });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** README.txt's text: the first entry of a package. */
export function readmeOf(zip: Buffer): string {
  const [first] = readZip(zip);
  if (first?.name !== 'README.txt') throw new Error(`first entry is ${first?.name}, not README.txt`);
  return first.data.toString('utf8');
}
