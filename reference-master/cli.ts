// `npm run master`: the reference master on 127.0.0.1:8000 with two sample meetings, both active,
// and one scheduled hours ahead and not started (a node can preheat it), for running a node
// against by hand or from the demo script.
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createReferenceMaster, type ReferenceMaster, type ReferenceMasterOptions } from './master.ts';

export const SAMPLE_MEETINGS = [
  { id: '5f3c2a9e-8b1d-4c6f-a2e7-9d0b1c3e4f5a', title: '第一季度工作会议' },
  { id: 'meeting-2024-01', title: 'Quarterly Product Review' },
] as const;

/** Not started, scheduled this many hours after the master starts. */
export const SAMPLE_UPCOMING_MEETING = { id: 'meeting-2024-02-upcoming', title: '第二季度规划会议', hoursAhead: 3 } as const;

export interface SampleMasterOptions extends ReferenceMasterOptions {
  /** Default 0 (any free port). */
  port?: number;
  host?: string;
  /** Pad each sample package to about this size. */
  packageSizeBytes?: number;
  /** Start (activate) the two sample meetings; default true. */
  startMeetings?: boolean;
  /** Add the upcoming (not started) sample meeting; default true. */
  upcomingMeeting?: boolean;
}

export interface SampleMaster {
  master: ReferenceMaster;
  url: string;
  port: number;
  /** The two sample meetings that startMeetings starts. */
  meetingIds: string[];
  /** The meeting scheduled hours ahead and left 未开始 (empty when upcomingMeeting is false). */
  upcomingMeetingIds: string[];
  close(): Promise<void>;
}

export async function startSampleMaster(options: SampleMasterOptions = {}): Promise<SampleMaster> {
  const { port = 0, host = '127.0.0.1', packageSizeBytes, startMeetings = true, upcomingMeeting = true, ...masterOptions } = options;
  const master = createReferenceMaster(masterOptions);
  try {
    for (const meeting of SAMPLE_MEETINGS) {
      master.addMeeting({ ...meeting, ...(packageSizeBytes ? { packageSizeBytes } : {}) });
    }
    if (upcomingMeeting) {
      const { id, title, hoursAhead } = SAMPLE_UPCOMING_MEETING;
      master.addMeeting({
        id,
        title,
        intro: '尚未开始的会议：节点可以在开始前预热其会议包',
        time: Date.now() + hoursAhead * 3600_000,
        ...(packageSizeBytes ? { packageSizeBytes } : {}),
      });
    }
    if (startMeetings) {
      for (const meeting of SAMPLE_MEETINGS) await master.startMeeting(meeting.id);
    }
    const listening = await master.listen(port, host);
    return {
      master,
      url: listening.url,
      port: listening.port,
      meetingIds: SAMPLE_MEETINGS.map((meeting) => meeting.id),
      upcomingMeetingIds: upcomingMeeting ? [SAMPLE_UPCOMING_MEETING.id] : [],
      close: () => master.close(),
    };
  } catch (error) {
    await master.close();
    throw error;
  }
}

function positiveNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${flag} expects a non-negative number, got ${value}`);
  return parsed;
}

const USAGE = `Usage: npm run master -- [--port 8000] [--host 127.0.0.1] [--throttle BYTES_PER_SEC]
                         [--rate BYTES_PER_SEC] [--redirect] [--size BYTES] [--legacy-status]
                         [--no-start] [--no-upcoming]

  --port 8000         port to listen on
  --host 127.0.0.1    address to listen on
  --throttle 600000   pace every package download on its own (the real master does about 0.6 MB/s)
  --rate 3000000      cap ALL package downloads together to this many bytes/s (one shared
                      token bucket, like the real master's CPU-bound package stream)
  --redirect          the tablets' download-package URL redirects (302) to a synced node
  --size BYTES        pad each sample package to about BYTES (pseudo-random, stored)
  --legacy-status     answer status/node in the old {"active_meeting": "<id>"} form
  --no-start          leave the two sample meetings 未开始 (start them via the admin API)
  --no-upcoming       leave out the sample meeting scheduled hours ahead (未开始)
  -h, --help          this text`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8000' },
      host: { type: 'string', default: '127.0.0.1' },
      throttle: { type: 'string' },
      rate: { type: 'string' },
      redirect: { type: 'boolean', default: false },
      size: { type: 'string' },
      'legacy-status': { type: 'boolean', default: false },
      'no-start': { type: 'boolean', default: false },
      'no-upcoming': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const throttle = positiveNumber('throttle', values.throttle);
  const rate = positiveNumber('rate', values.rate);
  const size = positiveNumber('size', values.size);
  const sample = await startSampleMaster({
    port: positiveNumber('port', values.port) ?? 8000,
    host: values.host,
    redirectToNodes: values.redirect,
    legacyStatus: values['legacy-status'],
    startMeetings: !values['no-start'],
    upcomingMeeting: !values['no-upcoming'],
    ...(throttle ? { throttleBytesPerSec: throttle } : {}),
    ...(rate ? { packageRateBytesPerSec: rate } : {}),
    ...(size ? { packageSizeBytes: size } : {}),
  });
  const { url } = sample;
  const lines = [
    `reference master listening on ${url}${throttle ? ` (each download throttled to ${throttle} B/s)` : ''}${rate ? ` (all package downloads share ${rate} B/s)` : ''}${values.redirect ? ' (tablet downloads redirect to nodes)' : ''}`,
    '',
    'meetings:',
    ...sample.master.meetings().map((m) => `  ${m.id}  ${m.status}  ${m.time}  ${m.title}  ${url}/api/v1/meetings/${m.id}/download-package-direct`),
    '',
    'master API:',
    `  GET  ${url}/api/v1/meetings/status/node`,
    `  GET  ${url}/api/v1/meetings/status/token     # the tablets' poll`,
    `  GET  ${url}/api/v1/meetings/                 # every meeting, with status and time`,
    `  GET  ${url}/api/v1/nodes/list`,
    `  GET  ${url}/api/v1/nodes/available`,
    '',
    'admin API (not on the real master):',
    `  curl -X POST ${url}/admin/meetings -H 'content-type: application/json' -d '{"id":"m3","title":"第二次会议","packageSizeBytes":10485760}'`,
    `  curl -X POST ${url}/admin/meetings/m3/start        # or /end, /delete`,
    `  curl -X POST ${url}/admin/meetings/m3/time -H 'content-type: application/json' -d '{"time":"2026-01-01T14:00"}'`,
    `  curl -X POST ${url}/admin/meetings/m3/documents -H 'content-type: application/json' -d '{"documents":[{"name":"议程.pdf"}]}'`,
    `  curl ${url}/admin/meetings        # also GET /admin/stats, /admin/nodes, /admin/token, /admin/faults`,
    `  curl -X POST ${url}/admin/faults -H 'content-type: application/json' -d '{"route":"package","fault":{"kind":"cutChunked","afterBytes":1000,"times":1}}'`,
    '',
    'Ctrl-C to stop.',
  ];
  console.log(lines.join('\n'));

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping reference master`);
    sample.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(resolve(script))).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
