import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ZipArchive, type ZipOptions } from 'archiver';
import fc from 'fast-check';
import { checkZipFile, type ZipCheckResult } from './zip-check.ts';

interface EntrySpec {
  name: string;
  content: Buffer | string;
  store?: boolean;
}

async function buildZip(entries: readonly EntrySpec[], options: ZipOptions = {}): Promise<Buffer> {
  const archive = new ZipArchive(options);
  const chunks: Buffer[] = [];
  archive.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    archive.on('end', () => resolve());
    archive.on('error', reject);
  });
  for (const entry of entries) {
    // An explicit `store: undefined` would override the archive-wide `store` option.
    archive.append(entry.content, entry.store === undefined ? { name: entry.name } : { name: entry.name, store: entry.store });
  }
  await archive.finalize();
  await ended;
  return Buffer.concat(chunks);
}

interface HandEntry {
  name: string;
  content: Buffer;
  comment?: string;
}

/**
 * Builds a stored-only archive by hand so the test controls what archiver never emits for small data:
 * per-entry ZIP64 extra fields holding the local header offset, and central directories over 1 MiB.
 */
function buildZipByHand(entries: readonly HandEntry[], zip64: boolean): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const comment = Buffer.from(entry.comment ?? '', 'utf8');
    const crc = crc32(entry.content);
    const size = entry.content.length;

    const localExtra = zip64 ? Buffer.alloc(20) : Buffer.alloc(0);
    if (zip64) {
      localExtra.writeUInt16LE(0x0001, 0);
      localExtra.writeUInt16LE(16, 2);
      localExtra.writeBigUInt64LE(BigInt(size), 4);
      localExtra.writeBigUInt64LE(BigInt(size), 12);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(zip64 ? 45 : 10, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(zip64 ? 0xffffffff : size, 18);
    local.writeUInt32LE(zip64 ? 0xffffffff : size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(localExtra.length, 28);
    const localRecord = Buffer.concat([local, name, localExtra, entry.content]);

    const centralExtra = zip64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (zip64) {
      centralExtra.writeUInt16LE(0x0001, 0);
      centralExtra.writeUInt16LE(24, 2);
      centralExtra.writeBigUInt64LE(BigInt(size), 4);
      centralExtra.writeBigUInt64LE(BigInt(size), 12);
      centralExtra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 45, 4);
    central.writeUInt16LE(zip64 ? 45 : 10, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(zip64 ? 0xffffffff : size, 20);
    central.writeUInt32LE(zip64 ? 0xffffffff : size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(centralExtra.length, 30);
    central.writeUInt16LE(comment.length, 32);
    central.writeUInt32LE(zip64 ? 0xffffffff : offset, 42);
    centrals.push(Buffer.concat([central, name, centralExtra, comment]));

    locals.push(localRecord);
    offset += localRecord.length;
  }
  const centralDirectory = Buffer.concat(centrals);
  const centralDirectoryOffset = offset;
  const endParts: Buffer[] = [];
  if (zip64) {
    const record = Buffer.alloc(56);
    record.writeUInt32LE(0x06064b50, 0);
    record.writeBigUInt64LE(44n, 4);
    record.writeUInt16LE(45, 12);
    record.writeUInt16LE(45, 14);
    record.writeBigUInt64LE(BigInt(entries.length), 24);
    record.writeBigUInt64LE(BigInt(entries.length), 32);
    record.writeBigUInt64LE(BigInt(centralDirectory.length), 40);
    record.writeBigUInt64LE(BigInt(centralDirectoryOffset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(centralDirectoryOffset + centralDirectory.length), 8);
    locator.writeUInt32LE(1, 16);
    endParts.push(record, locator);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : centralDirectory.length, 12);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : centralDirectoryOffset, 16);
  endParts.push(eocd);
  return Buffer.concat([...locals, centralDirectory, ...endParts]);
}

const SAMPLE_ENTRIES: readonly EntrySpec[] = [
  { name: 'agenda.txt', content: 'Agenda: 1. opening 2. budget 3. closing\n'.repeat(5) },
  { name: '会议材料/议程.txt', content: '第一项：开幕\n第二项：预算\n' },
  { name: '会议材料/附件/报告.pdf', content: Buffer.from('%PDF-1.4 fake pdf body for tests') },
  { name: 'empty.txt', content: '' },
];

function assertOk(result: ZipCheckResult): asserts result is Extract<ZipCheckResult, { ok: true }> {
  assert.equal(result.ok, true, result.ok ? '' : `expected ok, got: ${result.reason}`);
}

function assertNotOk(result: ZipCheckResult, context: string): void {
  assert.equal(result.ok, false, `expected not ok (${context})`);
  if (!result.ok) assert.ok(result.reason.length > 0, 'reason must be non-empty');
}

describe('checkZipFile', () => {
  let directory = '';
  before(async () => {
    directory = await mkdtemp(join(tmpdir(), 'zip-check-'));
  });
  after(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  async function checkBuffer(content: Buffer): Promise<ZipCheckResult> {
    const path = join(directory, `${randomUUID()}.zip`);
    await writeFile(path, content);
    try {
      return await checkZipFile(path);
    } finally {
      await rm(path, { force: true });
    }
  }

  /** Checks every prefix of `content` through one fd, shrinking the file in place. */
  async function checkEveryTruncation(content: Buffer): Promise<void> {
    const path = join(directory, `${randomUUID()}.zip`);
    await writeFile(path, content);
    const handle = await open(path, 'r+');
    try {
      for (let cut = content.length - 1; cut >= 0; cut--) {
        await handle.truncate(cut);
        assertNotOk(await checkZipFile(handle.fd), `cut at ${cut} of ${content.length}`);
      }
    } finally {
      await handle.close();
      await rm(path, { force: true });
    }
  }

  describe('accepts complete archives', () => {
    test('deflated archive with several entries, including Chinese names', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES);
      const result = await checkBuffer(zip);
      assertOk(result);
      assert.equal(result.entries, SAMPLE_ENTRIES.length);
      assert.equal(result.centralDirectoryOffset + result.centralDirectorySize, zip.length - 22);
      assert.ok(zip.includes(Buffer.from('会议材料/议程.txt', 'utf8')), 'names are stored as UTF-8');
    });

    test('stored (uncompressed) archive', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES, { store: true });
      assert.ok(zip.includes(Buffer.from('第一项：开幕', 'utf8')), 'content is stored verbatim');
      const result = await checkBuffer(zip);
      assertOk(result);
      assert.equal(result.entries, SAMPLE_ENTRIES.length);
    });

    test('empty archive (22 bytes, 0 entries)', async () => {
      const zip = await buildZip([]);
      assert.equal(zip.length, 22);
      const result = await checkBuffer(zip);
      assertOk(result);
      assert.deepEqual(result, { ok: true, entries: 0, centralDirectoryOffset: 0, centralDirectorySize: 0 });
    });

    test('archive with a comment', async () => {
      const comment = '2024 年度第三次董事会 — board meeting package';
      const zip = await buildZip(SAMPLE_ENTRIES, { comment });
      assert.ok(zip.subarray(zip.length - Buffer.byteLength(comment)).equals(Buffer.from(comment)));
      const result = await checkBuffer(zip);
      assertOk(result);
      assert.equal(result.entries, SAMPLE_ENTRIES.length);
    });

    test('archive whose comment contains the end-record signature', async () => {
      const comment = 'fake PK\u0005\u0006 signature inside the comment, followed by more than 22 bytes';
      const zip = await buildZip(SAMPLE_ENTRIES, { comment });
      const signature = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
      const fake = zip.lastIndexOf(signature);
      const commentStart = zip.length - Buffer.byteLength(comment);
      assert.ok(fake > commentStart && fake < zip.length - 22, 'a backward scan meets the fake signature first');
      assertOk(await checkBuffer(zip));
    });

    test('an already-open fd is checked and left open', async () => {
      const path = join(directory, 'fd.zip');
      await writeFile(path, await buildZip(SAMPLE_ENTRIES));
      const handle = await open(path, 'r');
      try {
        assertOk(await checkZipFile(handle.fd));
        assert.equal((await handle.stat()).size > 0, true, 'fd is still usable');
        assertOk(await checkZipFile(handle.fd));
      } finally {
        await handle.close();
      }
    });

    test('central directory larger than the 1 MiB read window', async () => {
      // 8-byte names and 65480-byte comments make each header 65534 bytes, so the 1 MiB boundary
      // (counted from the central directory start) falls inside the fixed part of the 17th header.
      const headerSize = 46 + 8 + 65_480;
      const boundaryInHeader = 1024 * 1024 - 16 * headerSize;
      assert.ok(boundaryInHeader > 0 && boundaryInHeader < 46);
      const entries = Array.from({ length: 40 }, (_, index) => ({
        name: `文件${String(index).padStart(2, '0')}`,
        content: Buffer.from(`content ${index}`),
        comment: String(index % 10).repeat(65_480),
      }));
      const zip = buildZipByHand(entries, false);
      const result = await checkBuffer(zip);
      assertOk(result);
      assert.ok(result.centralDirectorySize > 2 * 1024 * 1024);
      assert.equal(result.entries, 40);
    });
  });

  describe('rejects incomplete or damaged files', () => {
    test('0-byte file', async () => {
      assertNotOk(await checkBuffer(Buffer.alloc(0)), 'empty file');
    });

    test('every truncation of a small archive', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES);
      await checkEveryTruncation(zip);
    });

    test('every truncation of an archive with a comment (including inside the comment)', async () => {
      await checkEveryTruncation(await buildZip(SAMPLE_ENTRIES, { comment: 'closing PK\u0005\u0006 remarks 结束' }));
    });

    test('truncation reports a missing end record', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES);
      const result = await checkBuffer(zip.subarray(0, zip.length - 10));
      assert.equal(result.ok, false);
      if (!result.ok) assert.match(result.reason, /end-of-central-directory/);
    });

    test('appended garbage', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES, { comment: 'c' });
      assertNotOk(await checkBuffer(Buffer.concat([zip, Buffer.from([0])])), 'one zero byte');
      assertNotOk(await checkBuffer(Buffer.concat([zip, randomBytes(1000)])), 'random bytes');
      const endRecord = zip.subarray(zip.length - 23);
      assertNotOk(await checkBuffer(Buffer.concat([zip, endRecord])), 'a second copy of the end record');
    });

    test('random bytes', async () => {
      assertNotOk(await checkBuffer(randomBytes(4096)), 'random 4096 bytes');
      assertNotOk(await checkBuffer(randomBytes(21)), 'random 21 bytes');
    });

    test('corrupted central directory header signatures', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES);
      const intact = await checkBuffer(zip);
      assertOk(intact);
      const first = Buffer.from(zip);
      first[intact.centralDirectoryOffset] = 0x51;
      assertNotOk(await checkBuffer(first), 'first header');
      const last = Buffer.from(zip);
      const lastHeader = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
      assert.ok(lastHeader > intact.centralDirectoryOffset);
      last[lastHeader + 3] = 0x09;
      assertNotOk(await checkBuffer(last), 'last header');
    });

    test('end record inconsistent with the central directory', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES);
      const eocd = zip.length - 22;
      const patched = (patch: (copy: Buffer) => void): Buffer => {
        const copy = Buffer.from(zip);
        patch(copy);
        return copy;
      };
      const entries = SAMPLE_ENTRIES.length;
      assertNotOk(
        await checkBuffer(patched((b) => (b.writeUInt16LE(entries + 1, eocd + 8), b.writeUInt16LE(entries + 1, eocd + 10)))),
        'entry count too high',
      );
      assertNotOk(
        await checkBuffer(patched((b) => (b.writeUInt16LE(entries - 1, eocd + 8), b.writeUInt16LE(entries - 1, eocd + 10)))),
        'entry count too low',
      );
      assertNotOk(await checkBuffer(patched((b) => b.writeUInt16LE(entries - 1, eocd + 8))), 'entries on disk != total');
      assertNotOk(await checkBuffer(patched((b) => b.writeUInt16LE(1, eocd + 4))), 'disk number 1');
      assertNotOk(
        await checkBuffer(patched((b) => b.writeUInt32LE(b.readUInt32LE(eocd + 12) + 1, eocd + 12))),
        'central directory size off by one',
      );
      assertNotOk(
        await checkBuffer(patched((b) => b.writeUInt32LE(b.readUInt32LE(eocd + 16) - 1, eocd + 16))),
        'central directory offset off by one',
      );
    });

    test('first local header missing', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES);
      const damaged = Buffer.from(zip);
      damaged[0] = 0;
      assertNotOk(await checkBuffer(damaged), 'local header signature overwritten');
    });

    test('cut right after a zip stored inside the package', async () => {
      const inner = await buildZip([{ name: 'inner.txt', content: 'nested' }], { store: true });
      const outer = await buildZip(
        [
          { name: 'inner.zip', content: inner },
          { name: 'after.txt', content: 'more data' },
        ],
        { store: true },
      );
      const innerAt = outer.indexOf(inner);
      assert.ok(innerAt > 0);
      const cut = outer.subarray(0, innerAt + inner.length);
      assertOk(await checkBuffer(inner));
      assertNotOk(await checkBuffer(cut), 'file ends with the inner archive end record');
    });

    test('missing file rejects', async () => {
      await assert.rejects(checkZipFile(join(directory, 'does-not-exist.zip')), { code: 'ENOENT' });
    });
  });

  describe('ZIP64', () => {
    test('archiver forceZip64 output is ok, and its truncations are not', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES, { forceZip64: true });
      const eocd = zip.length - 22;
      assert.equal(zip.readUInt32LE(eocd - 20), 0x07064b50, 'a ZIP64 locator precedes the end record');
      assert.equal(zip.readUInt32LE(eocd + 16), 0xffffffff, 'the classic offset field is saturated');
      const result = await checkBuffer(zip);
      assertOk(result);
      assert.equal(result.entries, SAMPLE_ENTRIES.length);
      assert.equal(result.centralDirectoryOffset + result.centralDirectorySize, eocd - 20 - 56);
      await checkEveryTruncation(zip);
    });

    test('ZIP64 markers without a locator are not ok', async () => {
      const zip = Buffer.from(await buildZip(SAMPLE_ENTRIES, { forceZip64: true }));
      zip.writeUInt32LE(0, zip.length - 22 - 20);
      const result = await checkBuffer(zip);
      assertNotOk(result, 'locator signature wiped');
      if (!result.ok) assert.match(result.reason, /ZIP64/);
    });

    test('ZIP64 record inconsistent with the locator or central directory', async () => {
      const zip = await buildZip(SAMPLE_ENTRIES, { forceZip64: true });
      const record = zip.length - 22 - 20 - 56;
      const wrongEntries = Buffer.from(zip);
      wrongEntries.writeBigUInt64LE(BigInt(SAMPLE_ENTRIES.length + 1), record + 24);
      wrongEntries.writeBigUInt64LE(BigInt(SAMPLE_ENTRIES.length + 1), record + 32);
      assertNotOk(await checkBuffer(wrongEntries), 'ZIP64 entry count too high');
      const wrongSize = Buffer.from(zip);
      wrongSize.writeBigUInt64LE(wrongSize.readBigUInt64LE(record + 40) - 1n, record + 40);
      assertNotOk(await checkBuffer(wrongSize), 'ZIP64 central directory size off by one');
      const wrongLocator = Buffer.from(zip);
      wrongLocator.writeBigUInt64LE(BigInt(record - 1), zip.length - 22 - 20 + 8);
      assertNotOk(await checkBuffer(wrongLocator), 'locator points one byte early');
      const wrongRecordSize = Buffer.from(zip);
      wrongRecordSize.writeBigUInt64LE(45n, record + 4);
      assertNotOk(await checkBuffer(wrongRecordSize), 'ZIP64 record size does not reach the locator');
    });

    test('hand-built ZIP64 with local header offsets in the extra field', async () => {
      const entries = SAMPLE_ENTRIES.map((entry) => ({ name: entry.name, content: Buffer.from(entry.content) }));
      const zip = buildZipByHand(entries, true);
      const result = await checkBuffer(zip);
      assertOk(result);
      assert.equal(result.entries, entries.length);
      await checkEveryTruncation(zip);
    });

    test('hand-built ZIP64 entry with a saturated offset but no ZIP64 extra field is not ok', async () => {
      const zip = buildZipByHand([{ name: 'a.txt', content: Buffer.from('a') }], true);
      const intact = await checkBuffer(zip);
      assertOk(intact);
      const extraId = intact.centralDirectoryOffset + 46 + 'a.txt'.length;
      assert.equal(zip.readUInt16LE(extraId), 0x0001);
      const damaged = Buffer.from(zip);
      damaged.writeUInt16LE(0x9999, extraId);
      assertNotOk(await checkBuffer(damaged), 'ZIP64 extra field renamed');
    });

    test('hand-built ZIP64 entry whose local header offset is past the central directory is not ok', async () => {
      // The second entry, so the first-local-header check cannot be what catches it.
      const zip = buildZipByHand(
        [
          { name: 'a.txt', content: Buffer.from('a') },
          { name: 'b.txt', content: Buffer.from('b') },
        ],
        true,
      );
      const intact = await checkBuffer(zip);
      assertOk(intact);
      const secondHeader = intact.centralDirectoryOffset + 46 + 'a.txt'.length + 28;
      assert.equal(zip.readUInt32LE(secondHeader), 0x02014b50);
      const offsetField = secondHeader + 46 + 'b.txt'.length + 4 + 16;
      const damaged = Buffer.from(zip);
      damaged.writeBigUInt64LE(BigInt(intact.centralDirectoryOffset), offsetField);
      assertNotOk(await checkBuffer(damaged), 'offset == central directory offset');
    });
  });

  test('property: a random small archive is ok and every shorter prefix is not', async () => {
    const entryArbitrary = fc.record({
      name: fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }),
      content: fc.uint8Array({ maxLength: 300 }),
      store: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(entryArbitrary, { maxLength: 6 }),
        fc.option(fc.string({ maxLength: 40, unit: 'grapheme' }), { nil: undefined }),
        fc.boolean(),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        async (entries, comment, forceZip64, cutFraction) => {
          const zip = await buildZip(
            entries.map((entry, index) => ({
              name: `${index}-${entry.name}`,
              content: Buffer.from(entry.content),
              store: entry.store,
            })),
            { comment, forceZip64 },
          );
          const full = await checkBuffer(zip);
          assertOk(full);
          assert.equal(full.entries, entries.length);
          const cut = Math.floor(cutFraction * zip.length);
          assertNotOk(await checkBuffer(zip.subarray(0, cut)), `cut at ${cut} of ${zip.length}`);
        },
      ),
      { numRuns: 60 },
    );
  });
});
