/**
 * CPU and memory of other processes, read from /proc (Linux): the bench measures the node, the
 * reference master and nginx from outside, so every figure includes their threads (libuv's pool,
 * nginx workers) and none includes the load client.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

function clockTicksPerSecond(): number {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
}

const TICKS = clockTicksPerSecond();

/** User + system CPU seconds a process (all its threads) has used so far; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / TICKS;
  } catch {
    return 0;
  }
}

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function rssBytes(pid: number): number {
  return statusField(pid, 'VmRSS');
}

/** The kernel's own peak RSS since start or since the last resetPeakRss. */
export function peakRssBytes(pid: number): number {
  return statusField(pid, 'VmHWM');
}

/** Resets VmHWM to the current RSS (writing 5 to clear_refs); false where the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Peak of the summed RSS of a group of processes (nginx master + workers count together),
 * sampled every intervalMs.
 */
export class PeakRss {
  #pids: number[];
  #timer: NodeJS.Timeout;
  #peakSum = 0;
  #hwmResettable: boolean;

  constructor(pids: number[], intervalMs = 50) {
    this.#pids = pids;
    this.#hwmResettable = pids.every((pid) => resetPeakRss(pid));
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    const sum = this.#pids.reduce((total, pid) => total + rssBytes(pid), 0);
    if (sum > this.#peakSum) this.#peakSum = sum;
  }

  /** Stops sampling and returns the peak in bytes. */
  stop(): number {
    clearInterval(this.#timer);
    this.#sample();
    // A single process's kernel-kept peak also catches spikes between samples; for a group the
    // per-process peaks need not coincide, so only the sampled sum is honest.
    const [only] = this.#pids;
    if (this.#pids.length === 1 && only !== undefined && this.#hwmResettable) return Math.max(peakRssBytes(only), this.#peakSum);
    return this.#peakSum;
  }
}

/** CPU seconds used by a group of processes between start and stop. */
export class CpuMeter {
  #pids: number[];
  #start: number;

  constructor(pids: number[]) {
    this.#pids = pids;
    this.#start = this.#total();
  }

  #total(): number {
    return this.#pids.reduce((total, pid) => total + cpuSeconds(pid), 0);
  }

  stop(): number {
    return this.#total() - this.#start;
  }
}
