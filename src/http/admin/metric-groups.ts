/**
 * Groups of /metrics series that read figures kept elsewhere at scrape time: the process gauges
 * operators alert on in any Node service, storage and disk, and the scrub. NodeMetrics (metrics.ts)
 * registers them beside the node's own counters.
 */
import { readdirSync } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DiskSpace } from '../../store/disk-space.ts';
import type { ScrubTotals } from '../../sync/scrub.ts';

/** What the scrub metrics read at scrape time. */
export interface ScrubFigures {
  totals: ScrubTotals;
  running: boolean;
  /** The last finished scrub: when it ended and how many packages it quarantined. */
  last: { finishedAt: number; findings: number } | null;
}

/** What the storage gauges read at scrape time. */
export interface StorageGauges {
  /** Bytes held: complete packages plus temp files of downloads in flight. */
  usedBytes: () => number;
  /** storage.maxSize (0: no quota). */
  quotaBytes: () => number;
  /** The storage volume's figures (a cached reading; null: unknown). */
  disk: () => Promise<DiskSpace | null>;
}

/**
 * What operators alert on in any Node service, under prom-client's default names, but only
 * these: its collectDefaultMetrics adds a GC observer and a dozen series per heap space, memory
 * and CPU a small box pays at every scrape for figures nobody alerts on.
 */
export function registerProcessGauges(registers: Registry[]): () => void {
  new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers, collect() { this.set(process.memoryUsage.rss()); } });
  new Gauge({
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Gauge({
    name: 'nodejs_external_memory_bytes',
    help: 'Node.js external memory size in bytes (Buffers and other memory outside the JS heap).',
    registers,
    collect() {
      this.set(process.memoryUsage().external);
    },
  });
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors (NaN where /proc is not there).',
    registers,
    collect() {
      this.set(openDescriptors());
    },
  });
  // The event loop's delay, as a 50 ms timer sees it (how late it fires), the largest since the
  // last scrape. Not monitorEventLoopDelay: its histogram alone is ~360 KiB of native memory.
  let worstLagMs = 0;
  let expected = performance.now() + LAG_SAMPLE_MS;
  const sampler = setInterval(() => {
    const now = performance.now();
    worstLagMs = Math.max(worstLagMs, now - expected);
    expected = now + LAG_SAMPLE_MS;
  }, LAG_SAMPLE_MS);
  sampler.unref();
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Largest event-loop delay since the last scrape (a 50 ms timer firing late), in seconds.',
    registers,
    collect() {
      this.set(worstLagMs / 1000);
      worstLagMs = 0;
    },
  });
  return () => clearInterval(sampler);
}

/** The figures alerts are written on: storage used against the quota, and the disk left. */
export function registerStorageGauges(storage: StorageGauges, registers: Registry[]): void {
  new Gauge({
    name: 'meeting_edge_storage_used_bytes',
    help: 'Bytes held in storage: complete packages plus downloads in flight (what the quota counts).',
    registers,
    collect() {
      this.set(storage.usedBytes());
    },
  });
  new Gauge({
    name: 'meeting_edge_storage_quota_bytes',
    help: 'storage.maxSize: the most the packages may take (0: no quota).',
    registers,
    collect() {
      this.set(storage.quotaBytes());
    },
  });
  // Unknown figures are NaN, not 0: an alert on "free < x" must not fire on a failed reading.
  new Gauge({
    name: 'meeting_edge_disk_free_bytes',
    help: 'Free bytes on the storage volume, available to the node (NaN: could not be read).',
    registers,
    async collect() {
      this.set((await storage.disk())?.available ?? Number.NaN);
    },
  });
  new Gauge({
    name: 'meeting_edge_disk_total_bytes',
    help: 'Size of the storage volume in bytes (NaN: could not be read).',
    registers,
    async collect() {
      this.set((await storage.disk())?.total ?? Number.NaN);
    },
  });
}

/** The scrub: how much it checked, what it quarantined, and when it last finished. */
export function registerScrubMetrics(figures: () => ScrubFigures, registers: Registry[]): void {
  const totalCounter = (name: string, help: string, read: (totals: ScrubTotals) => number) => counterFromTotal(name, help, () => read(figures().totals), registers);
  totalCounter('meeting_edge_scrub_runs_total', 'Scrubs finished (every stored package re-hashed against its manifest).', (t) => t.runs);
  totalCounter('meeting_edge_scrub_packages_checked_total', 'Packages the scrub hashed to the end.', (t) => t.packagesChecked);
  totalCounter('meeting_edge_scrub_bytes_checked_total', 'Bytes the scrub hashed.', (t) => t.bytesChecked);
  totalCounter('meeting_edge_scrub_quarantined_total', 'Packages the scrub found not matching their manifest and quarantined.', (t) => t.packagesQuarantined);
  new Gauge({ name: 'meeting_edge_scrub_running', help: '1 while a scrub runs.', registers, collect() { this.set(figures().running ? 1 : 0); } });
  new Gauge({
    name: 'meeting_edge_scrub_last_finished_timestamp_seconds',
    help: 'Unix time the last scrub finished (0: none yet).',
    registers,
    collect() {
      this.set((figures().last?.finishedAt ?? 0) / 1000);
    },
  });
  new Gauge({
    name: 'meeting_edge_scrub_last_findings',
    help: 'Packages the last scrub quarantined.',
    registers,
    collect() {
      this.set(figures().last?.findings ?? 0);
    },
  });
}

/** A counter over a running total kept elsewhere: increased by what it grew since the last scrape. */
export function counterFromTotal(name: string, help: string, read: () => number, registers: Registry[]): Counter {
  let seen = 0;
  return new Counter({
    name,
    help,
    registers,
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

/** How often the event-loop lag is sampled. */
const LAG_SAMPLE_MS = 50;

/** This process's open descriptors (Linux /proc; NaN elsewhere), the listing's own not counted. */
function openDescriptors(): number {
  try {
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return Number.NaN;
  }
}
