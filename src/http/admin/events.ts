import type { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { PackageStore } from '../../store/package-store.ts';
import type { FetchView, JobOutcome } from '../../sync/fetch-view.ts';
import type { SyncFailure, SyncJobs } from '../../sync/sync-jobs.ts';
import type { Reconciler } from '../../sync/reconciler.ts';
import type { LogRing } from '../../log/log-ring.ts';
import type { TrafficHistory, TrafficSample } from './traffic-history.ts';
import type { NodeEventMap } from '../../node-events.ts';

export interface EventHubSources {
  jobs: SyncJobs;
  sync: Reconciler;
  store: PackageStore;
  logs: LogRing;
  node: EventEmitter<NodeEventMap>;
  serving: () => boolean;
  /** Each new sample of the panel's chart goes out as a `traffic` event. */
  traffic?: Pick<TrafficHistory, 'events'>;
}

export interface EventHubOptions {
  /** Flushes to clients at most this often: progress and log lines are coalesced in between. */
  flushIntervalMs?: number;
  /** An SSE comment this often keeps proxies and the browser from timing the stream out. */
  keepAliveMs?: number;
  /** A client this far behind (bytes buffered) is cut off rather than buffered without bound. */
  maxBufferedBytes?: number;
  now?: () => number;
}

interface Message {
  event: string;
  data: unknown;
}

interface Progress {
  id: string;
  bytes: number;
  rate: number;
  attempt: number;
  /** Unknown while fetching: the master streams packages without a Content-Length. */
  total: number | null;
}

/**
 * Server-Sent Events for the control panel (/api/events). State changes are queued as they
 * happen; sync progress and log lines are coalesced (latest progress per meeting, lines batched)
 * and everything goes out in one flush at most every flushIntervalMs, whatever the event rate.
 */
export class AdminEventHub {
  #sources: EventHubSources;
  #options: Required<EventHubOptions>;
  #clients = new Set<ServerResponse>();
  #queue: Message[] = [];
  #progress = new Map<string, Progress>();
  #logLines: string[] = [];
  #flushTimer: NodeJS.Timeout | null = null;
  #keepAlive: NodeJS.Timeout | null = null;
  #lastFlush = 0;
  #unsubscribe: Array<() => void> = [];
  #closed = false;

  constructor(sources: EventHubSources, options: EventHubOptions = {}) {
    this.#sources = sources;
    this.#options = { flushIntervalMs: 250, keepAliveMs: 15_000, maxBufferedBytes: 1 << 20, now: Date.now, ...options };
    const { jobs, sync, store, logs, node } = sources;
    this.#listen(jobs.events, 'started', (job: FetchView) => {
      this.#progress.set(job.meetingId, progressOf(job));
      this.#push('sync', { id: job.meetingId, phase: 'started', attempt: job.attempt, reason: job.reason });
    });
    this.#listen(jobs.events, 'progress', (job: FetchView) => {
      this.#progress.set(job.meetingId, progressOf(job));
      this.#schedule();
    });
    this.#listen(jobs.events, 'succeeded', (job: FetchView, outcome: JobOutcome) => {
      this.#progress.delete(job.meetingId);
      this.#push('sync', { id: job.meetingId, phase: 'succeeded', size: outcome.pkg.size, sha256: outcome.pkg.sha256, replaced: outcome.replaced });
    });
    this.#listen(jobs.events, 'failed', (job: FetchView, failure: SyncFailure) => {
      this.#progress.delete(job.meetingId);
      this.#push('sync', { id: job.meetingId, phase: 'failed', error: failure.message, code: failure.code });
    });
    this.#listen(sync.events, 'polled', (record: { at: number; token: string | null; meetings: unknown[] }) => {
      this.#push('poll', { ok: true, at: new Date(record.at).toISOString(), token: record.token, meeting_count: record.meetings.length });
    });
    this.#listen(sync.events, 'pollFailed', (error: Error) => this.#push('poll', { ok: false, error: sync.lastError?.message ?? error.message }));
    this.#listen(sync.events, 'changed', (id: string) => this.#push('meeting', { id }));
    this.#listen(store.events, 'change', (event: { type: string; meetingId: string }) => this.#push('store', { type: event.type, id: event.meetingId }));
    this.#listen(node, 'service', (event: { serving: boolean }) => this.#push('service', { running: event.serving }));
    this.#listen(node, 'config', (event: { changed: string[]; restartRequired: string[] }) =>
      this.#push('config', { changed: event.changed, restart_required: event.restartRequired }),
    );
    if (sources.traffic) this.#listen(sources.traffic.events, 'sample', (sample: TrafficSample) => this.#push('traffic', sample));
    this.#listen(logs.events, 'line', (line: { text: string }) => {
      this.#logLines.push(line.text);
      // A log storm must not grow this without bound between two flushes.
      if (this.#logLines.length > 200) this.#logLines.splice(0, this.#logLines.length - 200);
      this.#schedule();
    });
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  /** Takes over a raw response and streams events to it until the client leaves or close(). */
  attach(res: ServerResponse): void {
    if (this.#closed) {
      res.writeHead(503, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify({ error: 'node is stopping' }));
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    res.socket?.setNoDelay(true);
    this.#clients.add(res);
    res.once('close', () => this.#clients.delete(res));
    const hello = { running: this.#sources.serving(), at: new Date(this.#options.now()).toISOString(), syncing: [...this.#progress.values()] };
    this.#write(res, `retry: 3000\n\n${format({ event: 'hello', data: hello })}`);
    if (!this.#keepAlive) {
      this.#keepAlive = setInterval(() => {
        for (const client of this.#clients) this.#write(client, ': keep-alive\n\n');
      }, this.#options.keepAliveMs);
      this.#keepAlive.unref();
    }
  }

  /** Ends every stream (the node is stopping: open streams would hold server.close() up). */
  close(): void {
    this.#closed = true;
    for (const off of this.#unsubscribe) off();
    this.#unsubscribe = [];
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    if (this.#keepAlive) clearInterval(this.#keepAlive);
    this.#flushTimer = null;
    this.#keepAlive = null;
    for (const client of this.#clients) client.end();
    this.#clients.clear();
  }

  // The sources are typed emitters with different event maps; one untyped path subscribes to all.
  #listen<A extends unknown[]>(emitter: object, event: string, listener: (...args: A) => void): void {
    const target = emitter as unknown as EventEmitter;
    const wrapped = listener as (...args: unknown[]) => void;
    target.on(event, wrapped);
    this.#unsubscribe.push(() => target.off(event, wrapped));
  }

  #push(event: string, data: unknown): void {
    if (this.#clients.size === 0) return;
    this.#queue.push({ event, data });
    // A burst of state events (a poll evicting many meetings) is still bounded per flush.
    if (this.#queue.length > 500) this.#queue.splice(0, this.#queue.length - 500);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#flushTimer || this.#closed) return;
    if (this.#clients.size === 0) {
      this.#logLines = [];
      return;
    }
    const wait = Math.max(0, this.#lastFlush + this.#options.flushIntervalMs - this.#options.now());
    this.#flushTimer = setTimeout(() => this.#flush(), wait);
    this.#flushTimer.unref();
  }

  #flush(): void {
    this.#flushTimer = null;
    this.#lastFlush = this.#options.now();
    const messages = this.#queue;
    this.#queue = [];
    const running = [...this.#sources.jobs.jobs()].filter((job) => !job.settled && this.#progress.has(job.meetingId));
    if (running.length > 0) messages.push({ event: 'progress', data: { meetings: running.map(progressOf) } });
    if (this.#logLines.length > 0) {
      messages.push({ event: 'log', data: { lines: this.#logLines } });
      this.#logLines = [];
    }
    if (messages.length === 0) return;
    const text = messages.map(format).join('');
    for (const client of this.#clients) this.#write(client, text);
  }

  #write(res: ServerResponse, text: string): void {
    if (res.destroyed || res.writableEnded) return;
    if (res.writableLength > this.#options.maxBufferedBytes) {
      res.destroy();
      return;
    }
    res.write(text);
  }
}

function progressOf(job: FetchView): Progress {
  return { id: job.meetingId, bytes: job.bytesWritten, rate: Math.round(job.rate), attempt: job.attempt, total: null };
}

function format(message: Message): string {
  // JSON never contains a raw newline, so one data: line per message is enough.
  return `event: ${message.event}\ndata: ${JSON.stringify(message.data)}\n\n`;
}
