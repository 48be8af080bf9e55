/**
 * An edge node in its own process for the bench:
 *   node --import tsx bench/node-child.ts <config path> <admin token>
 * Emits `ready` with its URL, then job events with timestamps (`job`), and answers the RPC calls
 * below. Logs warnings and errors to stderr only, so logging costs nothing measurable.
 */
// First, as in start.ts: the process's settings hold before the other modules run.
import { compileHotCodeFromNow } from '../src/node/process-settings.ts';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { readEnvironment } from '../src/config/cli-options.ts';
import { EdgeNode } from '../src/edge-node.ts';
import { createLogger } from '../src/log/logger.ts';
import { serveRpc } from './rpc.ts';

const [configPath, adminToken] = process.argv.slice(2);
if (!configPath || !adminToken) {
  console.error('usage: node-child.ts <config path> <admin token>');
  process.exit(2);
}
const logger = createLogger({ level: 'WARNING', filePath: null, maxFileSize: 1 << 20, backupCount: 0 });
const node = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger, adminToken, environment: readEnvironment(process.env), policy: { drainTimeoutMs: 2_000 } });
node.stats.events.once('request', compileHotCodeFromNow);

/** The node's own event-loop delay: when it lags, every tablet waits, whatever the client does. */
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

const rpc = serveRpc({
  loopDelay: (reset: boolean) => {
    const figures = { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 };
    if (reset) loopDelay.reset();
    return figures;
  },
  syncNow: () => node.syncNow(),
  preheatNow: () => node.preheatTask.runNow(),
  heartbeatNow: () => node.heartbeatNow(),
  package: (meetingId: string) => node.store.get(meetingId) ?? null,
  activeDownloads: () => node.stats.activeDownloads,
});

/** Per job: when its first and its latest bytes reached the temp file. */
const progress = new WeakMap<object, { first: number; last: number }>();
/** Jobs already followed: 'started' comes once per attempt. */
const followed = new WeakSet<object>();
node.jobs.events.on('started', (job) => {
  rpc.emit('job', { type: 'started', meetingId: job.meetingId, attempt: job.attempt, at: Date.now() });
  if (followed.has(job)) return;
  followed.add(job);
  const unsubscribe = job.subscribe({
    bytes: () => {
      const now = Date.now();
      const seen = progress.get(job);
      if (seen) {
        seen.last = now;
        return;
      }
      progress.set(job, { first: now, last: now });
      rpc.emit('job', { type: 'first-bytes', meetingId: job.meetingId, at: now });
    },
    settled: () => unsubscribe(),
  });
});
node.jobs.events.on('succeeded', (job, outcome) => {
  rpc.emit('job', {
    type: 'succeeded',
    meetingId: job.meetingId,
    at: Date.now(),
    attemptStartedAt: job.attemptStartedAt,
    firstBytesAt: progress.get(job)?.first ?? null,
    bodyDoneAt: progress.get(job)?.last ?? null,
    size: outcome.pkg.size,
    sha256: outcome.pkg.sha256,
  });
});
node.jobs.events.on('failed', (job, failure) => {
  rpc.emit('job', { type: 'failed', meetingId: job.meetingId, at: Date.now(), message: failure.message });
});
process.on('SIGTERM', () => {
  void node.stop().finally(() => process.exit(0));
});
rpc.emit('ready', { url: node.localUrl, port: node.port });
