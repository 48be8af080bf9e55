import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { buildMeetingPackage } from './packages.ts';
import { readZip, readmeOf } from './read-zip.ts';
import { dosDateTime } from './zip-writer.ts';

describe('buildMeetingPackage', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'reference-packages-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const documents = [
    { name: '01_会议议程 Agenda.pdf', uploadId: '11111111-1111-4111-a111-111111111111', content: '%PDF-1.4 agenda' },
    { name: '02_报告', uploadId: '22222222-2222-4222-a222-222222222222', content: '%PDF-1.4 report' },
  ];

  test('README.txt comes first, deflated, with the build time and one line per PDF', async () => {
    const buildTime = new Date(2026, 2, 5, 9, 7, 33);
    const built = await buildMeetingPackage({ dir, meetingId: 'm1', title: '第一季度工作会议', documents, buildTime });
    const zip = await readFile(built.path);
    const entries = readZip(zip);
    assert.deepEqual(entries.map((entry) => entry.name), [
      'README.txt',
      'agenda_1/11111111-1111-4111-a111-111111111111.pdf',
      'agenda_2/22222222-2222-4222-a222-222222222222.pdf',
    ]);
    const readme = entries[0];
    assert.ok(readme);
    assert.equal(readme.offset, 0);
    assert.equal(readme.method, 8);
    const text = readmeOf(zip);
    assert.equal(text, built.readme);
    const lines = text.split('\n');
    assert.ok(lines.includes('会议名称: 第一季度工作会议'), text);
    assert.ok(lines.includes('会议ID: m1'), text);
    assert.ok(lines.includes('生成时间: 2026-03-05 09:07:33'), text);
    assert.ok(lines.includes('PDF文件数量: 2'), text);
    const list = lines.slice(lines.indexOf('文件列表:') + 1).filter(Boolean);
    assert.deepEqual(list, [
      '- agenda_1/11111111-1111-4111-a111-111111111111_01_会议议程 Agenda.pdf',
      '- agenda_2/22222222-2222-4222-a222-222222222222_02_报告.pdf',
    ]);
    assert.equal(built.builtAt, buildTime.getTime());
    assert.equal(entries[1]?.data.toString('utf8'), '%PDF-1.4 agenda');
  });

  test('every local header carries the build time, its CRC and sizes, and no data descriptor', async () => {
    const buildTime = new Date(2026, 2, 5, 9, 7, 33);
    const built = await buildMeetingPackage({ dir, meetingId: 'm1', title: 'T', documents, packageSizeBytes: 200_000, buildTime });
    const zip = await readFile(built.path);
    const entries = readZip(zip);
    assert.equal(entries.length, 4);
    for (const entry of entries) {
      assert.equal(entry.flags & 0x0008, 0, `${entry.name}: bit 3 set`);
      assert.equal(entry.dosTime, dosDateTime(buildTime), entry.name);
      assert.equal(entry.localCrc, crc32(entry.data), entry.name);
      assert.equal(entry.localCrc, entry.crc, entry.name);
      assert.equal(entry.localCompressedSize, entry.compressedSize, entry.name);
      assert.equal(entry.localSize, entry.data.length, entry.name);
    }
    // No descriptor between entries: each local header starts where the previous data ends.
    for (let i = 1; i < entries.length; i += 1) assert.equal(entries[i]?.offset, entries[i - 1]?.dataEnd);
    assert.ok(built.size <= 200_000 && built.size > 200_000 - 8192, String(built.size));
    assert.equal(entries[3]?.method, 0);
  });

  test('a later build of the same documents differs within README.txt only', async () => {
    const first = await readFile((await buildMeetingPackage({
      dir, meetingId: 'm1', title: 'T', documents, packageSizeBytes: 100_000, buildTime: new Date(2026, 0, 1, 10, 0, 0),
    })).path);
    const second = await readFile((await buildMeetingPackage({
      dir, meetingId: 'm1', title: 'T', documents, packageSizeBytes: 100_000, buildTime: new Date(2026, 0, 1, 10, 0, 2),
    })).path);
    const [a, b] = [readZip(first), readZip(second)];
    // The header's time (byte 10..13) already differs.
    assert.notDeepEqual(first.subarray(10, 14), second.subarray(10, 14));
    assert.notEqual(a[0]?.data.toString('utf8'), b[0]?.data.toString('utf8'));
    const firstEnd = a[0]?.dataEnd ?? 0;
    const diff = first.findIndex((byte, index) => byte !== second[index]);
    assert.ok(diff >= 0 && diff < firstEnd, `first difference at ${diff}`);
    // The documents (padding included) are the same files in both builds.
    for (let i = 1; i < a.length; i += 1) assert.deepEqual(a[i]?.data, b[i]?.data);
  });
});
