/**
 * The forgery a rogue member of an open node registry serves (issue 18): a valid zip whose first
 * entry, README.txt (the build's identity), is the master's byte for byte, and whose documents are
 * changed. Checking the lead against the master cannot catch it; only the bytes' origin can.
 * Shared by the site-tier test and `npm run simulate -- --site`.
 */
import { open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { ZipFileWriter } from '../../reference-master/zip-writer.ts';
import { firstReadme } from '../../src/store/zip-lead.ts';

/** Writes the forgery of `genuine` (the master's package bytes) into `dir`; resolves its bytes. */
export async function forgePackage(genuine: Buffer, dir: string): Promise<Buffer> {
  const readme = firstReadme(genuine.subarray(0, 64 * 1024));
  if (readme === null) throw new Error('the genuine package does not start with README.txt');
  // The local header's DOS time and date (offsets 10 and 12), back to the local time they encode.
  const time = genuine.readUInt16LE(10);
  const date = genuine.readUInt16LE(12);
  const builtAt = new Date((date >> 9) + 1980, ((date >> 5) & 15) - 1, date & 31, time >> 11, (time >> 5) & 63, (time & 31) * 2);
  const file = path.join(dir, `forgery-${process.pid}-${Date.now()}.zip`);
  const handle = await open(file, 'wx');
  try {
    const zip = new ZipFileWriter(handle);
    await zip.addBuffer('README.txt', Buffer.from(readme, 'utf8'), { date: builtAt, deflate: true });
    // The same size as the genuine package, give or take, so nothing about it looks odd.
    const filler = Buffer.alloc(Math.max(1024, genuine.length - 4096), 0x46);
    await zip.addBuffer('agenda_1/forged.pdf', Buffer.concat([Buffer.from('%PDF-1.4\n% forged: these are not the documents of this meeting\n'), filler]), { date: builtAt, deflate: false });
    await zip.finish();
    await handle.close();
    return await readFile(file);
  } finally {
    await handle.close().catch(() => undefined);
    await rm(file, { force: true });
  }
}
