// Meetings that have not started, the meeting list and the tablets' status poll, over HTTP.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { localMinute } from './local-time.ts';
import { createReferenceMaster, type ReferenceMaster } from './master.ts';
import { readZip, readmeOf } from './read-zip.ts';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(url: string, method = 'GET', body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, headers: body === undefined ? {} : { 'content-type': 'application/json' } });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const jsonOf = (answer: Answer): unknown => JSON.parse(answer.body.toString('utf8'));
const buildTimeLine = (zip: Buffer) => readmeOf(zip).split('\n').find((line) => line.startsWith('生成时间: '));

async function withMaster(run: (master: ReferenceMaster, url: string) => Promise<void>): Promise<void> {
  const tempDir = await mkdtemp(join(tmpdir(), 'reference-meetings-test-'));
  const master = createReferenceMaster({ tempDir, tokenCheckIntervalMs: 20, tokenSettleMs: 30 });
  try {
    const { url } = await master.listen();
    await run(master, url);
  } finally {
    await master.close();
    assert.deepEqual(await readdir(tempDir), []);
    await rm(tempDir, { recursive: true, force: true });
  }
}

test('a meeting not started is built on its first download and keeps that build', () =>
  withMaster(async (master, url) => {
    master.addMeeting({ id: 'later', title: '下午会议', time: Date.now() + 3 * 3600_000 });
    assert.equal(master.meeting('later')?.package, null);
    const direct = `${url}/api/v1/meetings/later/download-package-direct`;
    const [first, concurrent] = await Promise.all([request(direct), request(direct)]);
    assert.equal(first.status, 200);
    assert.deepEqual(concurrent.body, first.body);
    const second = await request(direct);
    assert.deepEqual(second.body, first.body);
    const view = master.meeting('later');
    assert.equal(view?.status, '未开始');
    assert.equal(view?.package?.reason, 'preheat');
    assert.equal(master.stats().packagesBuilt, 1);
    assert.equal(readZip(first.body)[0]?.name, 'README.txt');
  }));

test('setDocuments does not rebuild a kept build; start builds anew from the current documents', () =>
  withMaster(async (master, url) => {
    master.addMeeting({ id: 'later', title: 'Later', documents: [{ name: 'agenda.pdf', content: '%PDF-1.4 v1' }] });
    const direct = `${url}/api/v1/meetings/later/download-package-direct`;
    const preheated = await request(direct);
    const oldUpload = master.meeting('later')?.documents[0]?.uploadId;
    const view = master.setDocuments('later', [{ name: 'agenda.pdf', content: '%PDF-1.4 v2' }]);
    const newUpload = view.documents[0]?.uploadId;
    assert.ok(oldUpload && newUpload && oldUpload !== newUpload);
    const afterReplace = await request(direct);
    assert.deepEqual(afterReplace.body, preheated.body);
    assert.ok(readmeOf(afterReplace.body).includes(`${oldUpload}_agenda.pdf`));

    await master.startMeeting('later');
    const started = await request(direct);
    assert.notDeepEqual(started.body, preheated.body);
    const readme = readmeOf(started.body);
    assert.ok(readme.includes(`- agenda_1/${newUpload}_agenda.pdf`), readme);
    assert.ok(!readme.includes(oldUpload), readme);
    assert.equal(readZip(started.body)[1]?.data.toString('utf8'), '%PDF-1.4 v2');
    // The difference starts within the first entry: a new build time.
    assert.notEqual(buildTimeLine(started.body), buildTimeLine(preheated.body));
    const firstEnd = readZip(started.body)[0]?.dataEnd ?? 0;
    const diff = started.body.findIndex((byte, index) => byte !== preheated.body[index]);
    assert.ok(diff >= 0 && diff < firstEnd, `first difference at ${diff}`);
    assert.deepEqual(master.stats().packageBuilds.map((build) => build.reason), ['preheat', 'start']);

    // An unchanged document keeps its upload uuid.
    assert.equal(master.setDocuments('later', [{ name: 'agenda.pdf', content: '%PDF-1.4 v2' }]).documents[0]?.uploadId, newUpload);
    await master.endMeeting('later');
    assert.equal(master.meeting('later')?.package, null);
  }));

test('GET /api/v1/meetings/ lists every meeting; without the slash it redirects (307)', () =>
  withMaster(async (master, url) => {
    const time = new Date(2026, 5, 1, 14, 30);
    master.addMeeting({ id: 'a', title: '进行中会议', intro: '简介', time, documents: [{ name: '议程.pdf' }] });
    master.addMeeting({ id: 'b', title: 'Not yet', time: '2026-06-02T09:00' });
    master.addMeeting({ id: 'c', title: 'Over' });
    await master.startMeeting('a');
    await master.endMeeting('c');

    const moved = await request(`${url}/api/v1/meetings?x=1`);
    assert.equal(moved.status, 307);
    assert.equal(moved.headers['location'], `${url}/api/v1/meetings/?x=1`);

    const listed = await request(`${url}/api/v1/meetings/`);
    assert.equal(listed.status, 200);
    const meetings = jsonOf(listed) as Record<string, unknown>[];
    assert.deepEqual(meetings.map((m) => [m['id'], m['status'], m['time']]), [
      ['a', '进行中', '2026-06-01T14:30'],
      ['b', '未开始', '2026-06-02T09:00'],
      ['c', '已结束', localMinute(new Date(master.meeting('c')?.timeMs ?? 0))],
    ]);
    const first = meetings[0] ?? {};
    assert.deepEqual(Object.keys(first), ['id', 'title', 'intro', 'time', 'status', 'agenda_items']);
    assert.equal(first['title'], '进行中会议');
    assert.equal(first['intro'], '简介');
    const items = first['agenda_items'] as { title: string; files: Record<string, unknown>[] }[];
    assert.equal(items.length, 1);
    assert.equal(items[0]?.title, '议程');
    assert.ok(Object.values(items[0]?.files[0] ?? { x: 1 }).every((value) => value === null));
    // Raw UTF-8, not \u escapes.
    assert.ok(listed.body.includes(Buffer.from('进行中会议')));
  }));

test('the tablets poll lists meetings in progress only, with id "none" when there is none', () =>
  withMaster(async (master, url) => {
    master.addMeeting({ id: 'a', title: 'A' });
    const idle = jsonOf(await request(`${url}/api/v1/meetings/status/token`)) as { id: string; active_meetings: unknown[] };
    assert.equal(idle.id, 'none');
    assert.deepEqual(idle.active_meetings, []);
    await master.startMeeting('a');
    const busy = jsonOf(await request(`${url}/api/v1/meetings/status/token`)) as { id: string; active_meetings: unknown[] };
    assert.equal(busy.id, master.token());
    assert.deepEqual(busy.active_meetings, [{ id: 'a', title: 'A' }]);
  }));

test('admin API: create with time and intro, move, replace documents, delete', () =>
  withMaster(async (master, url) => {
    const created = await request(`${url}/admin/meetings`, 'POST', { id: 'm', title: 'M', intro: 'i', time: '2026-07-01T10:00' });
    assert.equal(created.status, 201);
    assert.equal((jsonOf(created) as { time: string }).time, '2026-07-01T10:00');
    assert.equal((await request(`${url}/admin/meetings`, 'POST', { id: 'n', title: 'N', time: 'soon' })).status, 400);

    const moved = await request(`${url}/admin/meetings/m/time`, 'POST', { time: '2026-07-01T15:45' });
    assert.equal(moved.status, 200);
    assert.equal(master.meeting('m')?.time, '2026-07-01T15:45');
    assert.equal((await request(`${url}/admin/meetings/m/time`, 'POST', { time: 'x' })).status, 400);

    const replaced = await request(`${url}/admin/meetings/m/documents`, 'POST', { documents: [{ name: 'new.pdf', content: '%PDF-1.4 n' }] });
    assert.equal(replaced.status, 200);
    assert.deepEqual(master.meeting('m')?.documents.map((d) => d.name), ['new.pdf']);
    assert.equal((await request(`${url}/admin/meetings/m/documents`, 'POST', { documents: 'x' })).status, 400);

    assert.equal((jsonOf(await request(`${url}/admin/meetings/m`)) as { id: string }).id, 'm');
    await request(`${url}/api/v1/meetings/m/download-package-direct`);
    assert.equal((await request(`${url}/admin/meetings/m/delete`, 'POST', {})).status, 200);
    assert.equal(master.meeting('m'), null);
    assert.equal((await request(`${url}/api/v1/meetings/m/download-package-direct`)).status, 404);
    assert.equal((await request(`${url}/admin/meetings/m/delete`, 'POST', {})).status, 404);
  }));
