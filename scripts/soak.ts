/**
 * Soak test, run on demand (not in CI):
 *
 *   npx tsx scripts/soak.ts [--minutes 10] [--clients 24] [--package-kb 2048]
 *
 * Runs the reference master in this process and an edge node as a child process
 * (scripts/lib/run-node.ts), then for the given time mixes: tablets downloading (whole, ranged,
 * aborted mid-body, HEAD), meetings restarting and ending on the master, manual syncs and status
 * reads through the admin API, and config changes through POST /api/config. Every 10 s it prints
 * the node's open fds and RSS; at the end, the figures and a verdict (flat or growing). Exit code 1
 * when a complete download had wrong bytes, or fds or memory kept growing.
 */
import { spawn } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createReferenceMaster } from '../reference-master/master.ts';
import { loopbackConfig } from '../scripts/lib/loopback-config.ts';
import { parseOptions } from '../scripts/lib/script-options.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');
const USAGE = `Usage: npx tsx scripts/soak.ts [--minutes 10] [--clients 24] [--package-kb 2048]

A node under a mixed load for the given time; prints its open fds and RSS every 10 s and exits 1
when a download had wrong bytes or fds or memory kept growing.`;
const { values: args } = parseOptions(
  () =>
    parseArgs({
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        minutes: { type: 'string', default: '10' },
        clients: { type: 'string', default: '24' },
        'package-kb': { type: 'string', default: '2048' },
      },
    }),
  USAGE,
);
const durationMs = Number(args.minutes) * 60_000;
const clients = Number(args.clients);
const packageBytes = Number(args['package-kb']) * 1024;
const MEETINGS = ['soak-1', 'soak-2', 'soak-3', 'soak-4'];

interface Sample {
  at: number;
  fds: number;
  rss: number;
  peak: number;
}

const counters = {
  downloadsComplete: 0,
  downloadsAborted: 0,
  ranged: 0,
  heads: 0,
  notAvailable: 0,
  wrongBytes: 0,
  clientErrors: 0,
  syncs: 0,
  statusReads: 0,
  configChanges: 0,
  configRejected: 0,
  meetingRestarts: 0,
};
const errorKinds = new Map<string, number>();

function countError(kind: string): void {
  counters.clientErrors++;
  errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
}

async function processFigures(pid: number): Promise<Omit<Sample, 'at'>> {
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { fds, rss: kib('VmRSS'), peak: kib('VmHWM') };
}

function call(
  port: number,
  method: string,
  urlPath: string,
  options: { headers?: Record<string, string>; body?: string; abortAfter?: number } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; sha: string | null; bytes: number; complete: boolean; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path: urlPath, headers: options.headers, agent: false }, (res) => {
      const hash = createHash('sha256');
      const head: Buffer[] = [];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
        if (head.length < 4) head.push(chunk);
        if (options.abortAfter !== undefined && bytes >= options.abortAfter) req.destroy();
      });
      res.on('error', () => {});
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          sha: res.complete ? hash.digest('hex') : null,
          bytes,
          complete: res.complete,
          text: Buffer.concat(head).toString('utf8').slice(0, 300),
        }),
      );
    });
    req.on('error', (error) => (options.abortAfter !== undefined && req.destroyed ? resolve({ status: 0, headers: {}, sha: null, bytes: 0, complete: false, text: '' }) : reject(error)));
    req.end(options.body);
  });
}

async function main(): Promise<void> {
  const master = createReferenceMaster({ tokenCheckIntervalMs: 500, tokenSettleMs: 500, tokenMaxWaitMs: 10_000 });
  const { port: masterPort } = await master.listen(0, '127.0.0.1');
  for (const id of MEETINGS) {
    master.addMeeting({ id, title: `Soak ${id}`, packageSizeBytes: packageBytes });
    await master.startMeeting(id);
  }
  /** Every version each meeting ever had: a complete download must be one of them. */
  const versions = new Map<string, Set<string>>(MEETINGS.map((id) => [id, new Set([master.meeting(id)!.package!.sha256])]));

  const dir = await mkdtemp(path.join(tmpdir(), 'edge-soak-'));
  const configPath = path.join(dir, 'node_config.json');
  await writeFile(
    configPath,
    JSON.stringify(
      loopbackConfig(masterPort, {
        network: { retryDelay: 0.5, connectionTimeout: 2, downloadTimeout: 10 },
        logging: { fileEnabled: false, level: 'WARNING' },
      }),
      null,
      2,
    ),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/lib/run-node.ts'), configPath], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderrTail = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderrTail = (stderrTail + text).slice(-4000);
  });
  const nodePort = await new Promise<number>((resolve, reject) => {
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
      const match = /^READY (\d+)$/m.exec(stdout);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`node exited (${code}) before READY: ${stderrTail}`)));
  });
  const pid = child.pid!;
  const token = (JSON.parse(await readFile(configPath, 'utf8')) as { adminToken: string }).adminToken;
  const auth = { authorization: `Bearer ${token}` };
  console.log(`soak: ${args.minutes} min, ${clients} tablets, ${MEETINGS.length} meetings of ${args['package-kb']} KiB; node pid ${pid} on port ${nodePort}; master on ${masterPort}`);

  const deadline = Date.now() + durationMs;
  const running = () => Date.now() < deadline;

  const tabletLoop = async () => {
    while (running()) {
      const id = MEETINGS[randomInt(MEETINGS.length)]!;
      const url = `/api/v1/meetings/${id}/download-package`;
      const mode = randomInt(10);
      try {
        if (mode < 5) {
          const res = await call(nodePort, 'GET', url);
          if (res.status === 200 && res.complete) {
            counters.downloadsComplete++;
            if (!versions.get(id)!.has(res.sha!)) counters.wrongBytes++;
          } else if (res.status === 503 || res.status === 404) counters.notAvailable++;
          else countError(`GET ${res.status}${res.complete ? '' : ' incomplete'}`);
        } else if (mode < 7) {
          const start = randomInt(packageBytes / 2);
          const res = await call(nodePort, 'GET', url, { headers: { range: `bytes=${start}-${start + randomInt(65_536)}` } });
          if (res.status === 206 || res.status === 503 || res.status === 404) counters.ranged++;
          else countError(`Range ${res.status}`);
        } else if (mode < 9) {
          await call(nodePort, 'GET', url, { abortAfter: 1 + randomInt(packageBytes) });
          counters.downloadsAborted++;
        } else {
          const res = await call(nodePort, 'HEAD', url);
          if ([200, 404, 503].includes(res.status)) counters.heads++;
          else countError(`HEAD ${res.status}`);
        }
      } catch (error) {
        countError(`${mode < 5 ? 'GET' : mode < 7 ? 'Range' : mode < 9 ? 'abort' : 'HEAD'}: ${(error as Error).message}`);
      }
    }
  };

  const adminLoop = async () => {
    let step = 0;
    while (running()) {
      await sleep(1_000);
      step++;
      try {
        await call(nodePort, 'GET', '/api/status', { headers: auth });
        counters.statusReads++;
        if (step % 3 === 0) {
          await call(nodePort, 'POST', '/api/sync', { headers: auth });
          counters.syncs++;
        }
        if (step % 15 === 0) {
          const patch = {
            heartbeat: { interval: 10 + randomInt(3) * 5 },
            network: { maxConcurrentDownloads: 1 + randomInt(4) },
            syncInterval: 10 + randomInt(3) * 5,
          };
          const res = await call(nodePort, 'POST', '/api/config', {
            headers: { ...auth, 'content-type': 'application/json' },
            body: JSON.stringify(patch),
          });
          if (res.status === 200) counters.configChanges++;
          else {
            counters.configRejected++;
            console.log(`soak: config change answered ${res.status}: ${res.text}`);
          }
        }
      } catch (error) {
        countError(`admin: ${(error as Error).message}`);
      }
    }
  };

  const masterLoop = async () => {
    let step = 0;
    while (running()) {
      await sleep(20_000);
      if (!running()) break;
      step++;
      const id = MEETINGS[step % MEETINGS.length]!;
      await master.endMeeting(id);
      // Every third time the meeting stays ended for a while: the node evicts it and fetches it again later.
      if (step % 3 === 0) await sleep(15_000);
      await master.startMeeting(id);
      versions.get(id)!.add(master.meeting(id)!.package!.sha256);
      counters.meetingRestarts++;
    }
  };

  const samples: Sample[] = [];
  const sampleLoop = async () => {
    const started = Date.now();
    while (running()) {
      const figures = await processFigures(pid);
      samples.push({ at: Date.now(), ...figures });
      console.log(
        `${String(Math.round((Date.now() - started) / 1000)).padStart(4)} s  fds ${String(figures.fds).padStart(5)}  ` +
          `rss ${(figures.rss / 2 ** 20).toFixed(0).padStart(4)} MiB  peak ${(figures.peak / 2 ** 20).toFixed(0).padStart(4)} MiB  ` +
          `complete ${counters.downloadsComplete}  aborted ${counters.downloadsAborted}  ranged ${counters.ranged}  ` +
          `unavailable ${counters.notAvailable}  errors ${counters.clientErrors}`,
      );
      await sleep(10_000);
    }
  };

  await Promise.all([sampleLoop(), adminLoop(), masterLoop(), ...Array.from({ length: clients }, tabletLoop)]);
  // Let the last connections drain, then take the final figures on a quiet node.
  await sleep(3_000);
  const final = await processFigures(pid);

  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  await master.close();
  await rm(dir, { recursive: true, force: true });

  // Compare the first and last third of the run (the start includes warm-up).
  const third = Math.max(1, Math.floor(samples.length / 3));
  const avg = (list: Sample[], key: 'fds' | 'rss') => list.reduce((sum, s) => sum + s[key], 0) / Math.max(1, list.length);
  const early = samples.slice(third, 2 * third);
  const late = samples.slice(-third);
  const fdGrowth = avg(late, 'fds') - avg(early, 'fds');
  const rssGrowth = avg(late, 'rss') / Math.max(1, avg(early, 'rss')) - 1;
  console.log('\nsoak figures');
  console.log(`  counters: ${JSON.stringify(counters)}`);
  if (errorKinds.size) console.log(`  client errors by kind: ${JSON.stringify(Object.fromEntries(errorKinds))}`);
  console.log(`  fds: min ${Math.min(...samples.map((s) => s.fds))}, max ${Math.max(...samples.map((s) => s.fds))}, quiet at the end ${final.fds}; middle→last third ${fdGrowth >= 0 ? '+' : ''}${fdGrowth.toFixed(1)}`);
  console.log(
    `  rss: min ${(Math.min(...samples.map((s) => s.rss)) / 2 ** 20).toFixed(0)} MiB, max ${(Math.max(...samples.map((s) => s.rss)) / 2 ** 20).toFixed(0)} MiB, ` +
      `peak ${(final.peak / 2 ** 20).toFixed(0)} MiB; middle→last third ${(rssGrowth * 100).toFixed(1)} %`,
  );
  const growing = samples.length >= 6 && (fdGrowth > 10 || rssGrowth > 0.25);
  const verdict = counters.wrongBytes > 0 ? 'FAIL: wrong bytes served' : growing ? 'FAIL: fds or memory kept growing' : 'OK: fds and memory flat';
  console.log(`  verdict: ${verdict}`);
  process.exitCode = verdict.startsWith('OK') ? 0 : 1;
}

await main();
