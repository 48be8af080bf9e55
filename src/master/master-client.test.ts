import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createReferenceMaster, type ReferenceMaster } from '../../reference-master/master.ts';
import { MasterClient, MasterError, parseMeetingList, parseMeetingStatus, parseNodeList, safeTitle } from './master-client.ts';

function clientFor(port: number, options: { requestTimeoutMs?: number; maxJsonBytes?: number } = {}): MasterClient {
  return new MasterClient({ host: '127.0.0.1', port, connectTimeoutMs: 1_000, requestTimeoutMs: options.requestTimeoutMs ?? 5_000, ...(options.maxJsonBytes ? { maxJsonBytes: options.maxJsonBytes } : {}) });
}

function masterError(check: (error: MasterError) => void) {
  return (error: unknown) => {
    assert.ok(error instanceof MasterError, `expected a MasterError, got ${String(error)}`);
    check(error);
    return true;
  };
}

describe('parseMeetingStatus', () => {
  test('the current form: token and meetings; titles are always non-empty strings', () => {
    const parsed = parseMeetingStatus({
      id: 'tok-1',
      active_meetings: [
        { id: 'm1', title: '董事会' },
        { id: 'm2', title: null },
        { id: 'm3' },
        { id: 'm4', title: '   ' },
        { id: 42, title: 'numeric id' },
        { id: 'm1', title: 'duplicate' },
      ],
      timestamp: 1.5,
    });
    assert.equal(parsed.token, 'tok-1');
    assert.deepEqual(parsed.meetings.map((m) => m.id), ['m1', 'm2', 'm3', 'm4', '42']);
    assert.equal(parsed.meetings[0]?.title, '董事会');
    for (const meeting of parsed.meetings) {
      assert.equal(typeof meeting.title, 'string');
      assert.notEqual(meeting.title.trim(), '', meeting.id);
    }
    assert.deepEqual(parsed.rejectedIds, []);
  });

  test('ids that could name a path or are not ids at all are rejected, never fetched', () => {
    const parsed = parseMeetingStatus({ id: 't', active_meetings: [{ id: '../etc', title: 'x' }, { id: 'a/b' }, { id: null }, {}, 'ok-id'] });
    assert.deepEqual(parsed.meetings, [{ id: 'ok-id', title: safeTitle('ok-id', undefined) }]);
    assert.equal(parsed.rejectedIds.length, 4);
  });

  test('the legacy single-meeting form', () => {
    assert.deepEqual(parseMeetingStatus({ active_meeting: 'm7' }), { token: null, meetings: [{ id: 'm7', title: safeTitle('m7', undefined) }], rejectedIds: [] });
    assert.deepEqual(parseMeetingStatus({ active_meeting: null }).meetings, []);
    assert.deepEqual(parseMeetingStatus({ active_meeting: '' }).meetings, []);
  });

  test('answers that are not a status document are errors', () => {
    for (const body of [null, [], 'text', 3, { active_meetings: 'm1' }, { id: 't', active_meetings: { id: 'm1' } }]) {
      assert.throws(() => parseMeetingStatus(body), masterError((e) => assert.equal(e.code, 'BAD_STATUS_BODY')), JSON.stringify(body));
    }
  });

  test('safeTitle keeps real titles and names the meeting otherwise', () => {
    assert.equal(safeTitle('m1', 'Board'), 'Board');
    for (const bad of [null, undefined, '', ' ', 5, {}]) {
      const title = safeTitle('m1', bad);
      assert.ok(title.includes('m1') && title.trim() !== '', String(bad));
    }
  });
});

describe('MasterClient against the reference master', () => {
  let master: ReferenceMaster;
  let port: number;
  const clients: MasterClient[] = [];
  const client = (options?: { requestTimeoutMs?: number; maxJsonBytes?: number }) => {
    const made = clientFor(port, options);
    clients.push(made);
    return made;
  };

  before(async () => {
    master = createReferenceMaster({ tokenCheckIntervalMs: 100, tokenSettleMs: 100 });
    port = (await master.listen(0, '127.0.0.1')).port;
    master.addMeeting({ id: 'm1', title: '第一次会议' });
    await master.startMeeting('m1');
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await master.close();
  });

  test('status: token and active meetings', async () => {
    const status = await client().getMeetingStatus();
    assert.equal(status.token, master.token());
    assert.deepEqual(status.meetings, [{ id: 'm1', title: '第一次会议' }]);
  });

  test('status in the legacy form', async (t) => {
    const legacy = createReferenceMaster({ legacyStatus: true });
    t.after(() => legacy.close());
    const legacyPort = (await legacy.listen(0, '127.0.0.1')).port;
    const legacyClient = clientFor(legacyPort);
    t.after(() => legacyClient.close());
    assert.deepEqual((await legacyClient.getMeetingStatus()).meetings, []);
    legacy.addMeeting({ id: 'm9', title: 'Old style' });
    await legacy.startMeeting('m9');
    const status = await legacyClient.getMeetingStatus();
    assert.equal(status.token, null);
    assert.deepEqual(status.meetings.map((m) => m.id), ['m9']);
    assert.notEqual(status.meetings[0]?.title.trim(), '');
  });

  test('a huge answer is cut off, not buffered', async () => {
    master.setFault('status', { kind: 'hugeBody', bytes: 3 * 1024 * 1024, times: 1 });
    await assert.rejects(
      client({ maxJsonBytes: 256 * 1024 }).getMeetingStatus(),
      masterError((e) => {
        assert.equal(e.code, 'BODY_TOO_LARGE');
        assert.match(e.message, /status\/node/);
      }),
    );
  });

  test('an HTML error page from a proxy: the status and the page\'s words', async () => {
    master.setFault('status', { kind: 'html', times: 1 });
    await assert.rejects(
      client().getMeetingStatus(),
      masterError((e) => {
        assert.equal(e.status, 502);
        assert.equal(e.code, 'HTTP_STATUS');
        assert.match(e.message, /502 Bad Gateway/);
        assert.doesNotMatch(e.message, /<html>/i, 'markup is not an operator message');
      }),
    );
  });

  test('a 500 page and broken JSON are errors with their cause', async () => {
    master.setFault('status', { kind: 'status', code: 500, times: 1 });
    await assert.rejects(client().getMeetingStatus(), masterError((e) => {
      assert.equal(e.status, 500);
      assert.match(e.message, /Internal Server Error/);
    }));
    master.setFault('status', { kind: 'invalidJson', times: 1 });
    await assert.rejects(client().getMeetingStatus(), masterError((e) => assert.equal(e.code, 'BAD_JSON')));
  });

  test('a master that never answers: the call fails within the request timeout', async () => {
    master.setFault('status', { kind: 'hang', times: 1 });
    await assert.rejects(client({ requestTimeoutMs: 300 }).getMeetingStatus(), MasterError);
  });

  test('register, heartbeat, unregister; unregistering an unknown node is fine', async () => {
    const c = client();
    await c.register('node-test0001', '127.0.0.1:8001');
    assert.ok(master.nodes().some((n) => n.nodeId === 'node-test0001'));
    await c.heartbeat({ node_id: 'node-test0001', address: '127.0.0.1:8001', status: 'online', active_meetings: [{ id: 'm1', title: '第一次会议' }], synced_meetings: ['m1'] });
    assert.deepEqual(master.nodes().find((n) => n.nodeId === 'node-test0001')?.syncedMeetings, ['m1']);
    await c.unregister('node-test0001');
    assert.ok(!master.nodes().some((n) => n.nodeId === 'node-test0001'));
    await c.unregister('node-test0001');
    await c.unregister('node-never-seen');
  });

  test('a heartbeat from a node the master forgot registers it again', async () => {
    await client().heartbeat({ node_id: 'node-test0002', address: '127.0.0.1:8002', status: 'online', active_meetings: [], synced_meetings: [] });
    assert.equal(master.nodes().find((n) => n.nodeId === 'node-test0002')?.address, '127.0.0.1:8002');
  });

  test('the master\'s detail is in the error of a rejected call', async () => {
    await assert.rejects(client().register('node-x', ''), masterError((e) => {
      assert.equal(e.status, 400);
      assert.match(e.message, /Invalid node data/);
    }));
  });

  test('openPackage: 404 with the master\'s detail; invalid ids never reach the wire', async () => {
    const signal = new AbortController().signal;
    const options = { signal, headersTimeoutMs: 2_000, idleTimeoutMs: 2_000 };
    await assert.rejects(client().openPackage('nope', options), masterError((e) => {
      assert.equal(e.status, 404);
      assert.match(e.message, /会议 nope 不存在/);
    }));
    const before = master.stats().requestsTotal;
    await assert.rejects(client().openPackage('../m1', options), masterError((e) => assert.equal(e.code, 'BAD_ID')));
    assert.equal(master.stats().requestsTotal, before);

    const response = await client().openPackage('m1', options);
    const chunks: Buffer[] = [];
    for await (const chunk of response.body) chunks.push(chunk as Buffer);
    assert.equal(Buffer.concat(chunks).length, master.meeting('m1')?.package?.size);
  });

  test('nobody listening: a connection error, not a hang', async (t) => {
    const gone = createReferenceMaster();
    const gonePort = (await gone.listen(0, '127.0.0.1')).port;
    await gone.close();
    const c = clientFor(gonePort);
    t.after(() => c.close());
    await assert.rejects(c.getMeetingStatus(), masterError((e) => assert.equal(e.code, 'ECONNREFUSED')));
  });
});

describe('parseNodeList and parseMeetingList', () => {
  test('node list: online entries with an id and a host:port address; meeting ids from either form', () => {
    const nodes = parseNodeList([
      { node_id: 'node-a', address: '127.0.0.1:8001', status: 'online', last_seen: 12.5, active_meetings: [{ id: 'm1', title: 'x' }, 'm2', { id: '../x' }] },
      { node_id: 'node-b', address: 'no-port', status: 'online' },
      { node_id: '', address: '127.0.0.1:8002' },
      { node_id: 'node-c', address: '127.0.0.1:8003', status: 'offline' },
      null,
    ]);
    assert.deepEqual(nodes, [{ nodeId: 'node-a', address: '127.0.0.1:8001', lastSeen: 12.5, activeMeetings: ['m1', 'm2'] }]);
    assert.throws(() => parseNodeList({ detail: 'x' }), MasterError);
  });

  test('meeting list: status words mapped, time kept as the master wrote it, invalid ids dropped', () => {
    const meetings = parseMeetingList([
      { id: 'm1', title: '预备会', time: '2026-12-03T09:30', status: '未开始', agenda_items: [] },
      { id: 'm2', title: null, time: '', status: '进行中' },
      { id: 'm3', title: 'Done', status: '已结束' },
      { id: 'a/b', title: 'bad', status: '未开始' },
      { id: 'm4', title: 'odd', status: 'paused' },
    ]);
    assert.deepEqual(
      meetings.map((m) => [m.id, m.time, m.status]),
      [
        ['m1', '2026-12-03T09:30', 'not-started'],
        ['m2', null, 'active'],
        ['m3', null, 'ended'],
        ['m4', null, 'unknown'],
      ],
    );
    assert.equal(typeof meetings[1]?.title, 'string');
  });
});
