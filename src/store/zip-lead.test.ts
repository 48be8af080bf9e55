import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ZipArchive } from 'archiver';
import { buildIdentity, fileIdentity, firstEntryEnd, firstReadme, LEAD_CAP_BYTES } from './zip-lead.ts';

function readme(buildTime: string, files: string[]): string {
  return ['会议: 季度评审 Quarterly review', 'ID: m-1', `生成时间: ${buildTime}`, `PDF 数量: ${files.length}`, '文件列表:', ...files.map((f) => `- ${f}`), ''].join('\n');
}

async function archiverZip(first: string, rest: Buffer): Promise<Buffer> {
  const archive = new ZipArchive({ zlib: { level: 6 } });
  const chunks: Buffer[] = [];
  archive.on('data', (chunk: Buffer) => chunks.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    archive.on('end', () => resolve());
    archive.on('error', reject);
  });
  archive.append(Buffer.from(first, 'utf8'), { name: 'README.txt' });
  archive.append(rest, { name: 'agenda_1/a.pdf', store: true });
  await archive.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** Python's zipfile writing to a seekable file, as the real master builds its packages (sizes in the local header). */
async function pythonZip(dir: string, first: string, rest: Buffer, dateTime: string): Promise<Buffer> {
  const out = join(dir, `p-${randomBytes(4).toString('hex')}.zip`);
  const restPath = join(dir, 'rest.bin');
  await writeFile(restPath, rest);
  const script = [
    'import sys, zipfile',
    'out, text, rest, dt = sys.argv[1], sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4].split(",")]',
    'with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:',
    '    z.writestr(zipfile.ZipInfo("README.txt", tuple(dt)), text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)',
    '    z.write(rest, "agenda_1/a.pdf")',
  ].join('\n');
  execFileSync('python3', ['-c', script, out, first, restPath, dateTime]);
  return readFile(out);
}

describe('build identity from the leading bytes of a package', () => {
  test('Python-built zip (sizes in the local header): the identity covers exactly the first entry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zip-lead-'));
    try {
      const text = readme('2026-12-02 09:00:00', ['agenda_1/u1_a.pdf']);
      const zip = await pythonZip(dir, text, randomBytes(200_000), '2026,12,2,9,0,0');
      const end = firstEntryEnd(zip);
      assert.ok(end !== null && end > 30 && end < 4096, `first entry ends at ${end}`);
      assert.equal(zip.readUInt32LE(end), 0x04034b50, 'the next local header starts where the first entry ends');
      assert.equal(firstReadme(zip), text);
      // Fewer bytes than the entry: not yet known; the whole entry: known, and the same as from the whole zip.
      assert.equal(buildIdentity(zip.subarray(0, end - 1)), null);
      assert.deepEqual(buildIdentity(zip.subarray(0, end)), buildIdentity(zip));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a new build of the same documents: new build id, same documents id; a new document: new documents id', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zip-lead-'));
    try {
      const rest = randomBytes(50_000);
      const first = await pythonZip(dir, readme('2026-12-02 09:00:00', ['agenda_1/u1_a.pdf']), rest, '2026,12,2,9,0,0');
      const rebuilt = await pythonZip(dir, readme('2026-12-02 10:30:02', ['agenda_1/u1_a.pdf']), rest, '2026,12,2,10,30,2');
      const replaced = await pythonZip(dir, readme('2026-12-02 10:30:02', ['agenda_1/u2_a.pdf']), rest, '2026,12,2,10,30,2');
      const [a, b, c] = [first, rebuilt, replaced].map((zip) => buildIdentity(zip));
      assert.ok(a && b && c);
      assert.notEqual(a.buildId, b.buildId);
      assert.equal(a.documentsId, b.documentsId);
      assert.ok(a.documentsId);
      assert.notEqual(b.documentsId, c.documentsId);
      // Same bytes, same identity (two downloads of one build).
      assert.deepEqual(buildIdentity(Buffer.from(first)), a);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('archiver zip (data descriptors): the entry ends at the next record and README.txt still reads', async () => {
    const text = readme('2026-12-02 09:00:00', ['agenda_1/u1_a.pdf', 'agenda_2/u2_b.pdf']);
    const zip = await archiverZip(text, randomBytes(100_000));
    const end = firstEntryEnd(zip);
    assert.ok(end !== null);
    assert.equal(zip.readUInt32LE(end), 0x04034b50);
    assert.equal(firstReadme(zip), text);
    assert.ok(buildIdentity(zip)?.documentsId);
  });

  test('a lead that is not a zip, or a first entry larger than the cap: the identity is the first 64 KiB', () => {
    const noise = randomBytes(LEAD_CAP_BYTES + 10);
    noise.writeUInt32LE(0x11111111, 0);
    assert.equal(buildIdentity(noise.subarray(0, 1000)), null);
    const identity = buildIdentity(noise);
    assert.equal(identity?.length, LEAD_CAP_BYTES);
    assert.equal(identity?.documentsId, null);
    // A stream that ended early is identified by what it sent (the caller decides whether that is enough).
    assert.equal(buildIdentity(noise.subarray(0, 1000), true)?.length, 1000);
  });

  test('fileIdentity reads a stored package the same way as a probe reads the stream', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zip-lead-'));
    try {
      const zip = await pythonZip(dir, readme('2026-12-02 09:00:00', ['agenda_1/u1_a.pdf']), randomBytes(300_000), '2026,12,2,9,0,0');
      const file = join(dir, 'package.zip');
      await writeFile(file, zip);
      assert.deepEqual(await fileIdentity(file), buildIdentity(zip));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
