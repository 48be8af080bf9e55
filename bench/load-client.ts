/**
 * The fallback load client, used when no C compiler is present: the options and JSON output of
 * bench/loadgen.c (see there), built on node:http. It costs about as much CPU as the server, so
 * throughput measured with it is a lower bound.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    path: { type: 'string', default: '/' },
    method: { type: 'string', default: 'GET' },
    header: { type: 'string', multiple: true, default: [] },
    conns: { type: 'string', default: '1' },
    duration: { type: 'string' },
    requests: { type: 'string' },
    rate: { type: 'string' },
    buf: { type: 'string' },
    timeout: { type: 'string', default: '600' },
  },
});

const port = Number(values.port);
const conns = Number(values.conns);
const durationS = values.duration ? Number(values.duration) : 0;
const requestsPerConn = values.requests ? Number(values.requests) : 0;
const rate = values.rate ? Number(values.rate) : 0;
const headers: Record<string, string> = {};
for (const line of values.header) {
  const colon = line.indexOf(':');
  if (colon > 0) headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
}

const startedAt = performance.now();
const deadline = startedAt + (durationS > 0 ? durationS : Number(values.timeout)) * 1000;
const latencies: number[] = [];
const ttfbs: number[] = [];
const status: Record<string, number> = {};
let bytes = 0;
let completed = 0;
let errors = 0;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.round(p * (sorted.length - 1))] ?? 0;
}

async function connection(): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let done = 0;
  const more = () => (requestsPerConn > 0 ? done < requestsPerConn : performance.now() < deadline);
  while (more()) {
    await new Promise<void>((resolve) => {
      const sentAt = performance.now();
      const req = http.request({ host: values.host, port, path: values.path, method: values.method, headers, agent }, (res) => {
        status[res.statusCode ?? 0] = (status[res.statusCode ?? 0] ?? 0) + 1;
        let first = true;
        let received = 0;
        const stopAt = setTimeout(() => req.destroy(), Math.max(0, deadline - performance.now()));
        res.on('data', (chunk: Buffer) => {
          if (first) {
            first = false;
            ttfbs.push(performance.now() - sentAt);
          }
          received += chunk.length;
          if (performance.now() <= deadline || durationS === 0) bytes += chunk.length;
          if (rate > 0) {
            const due = sentAt + (received / rate) * 1000 - performance.now();
            if (due > 1) {
              res.pause();
              setTimeout(() => res.resume(), due);
            }
          }
        });
        res.on('end', () => {
          clearTimeout(stopAt);
          completed += 1;
          latencies.push(performance.now() - sentAt);
          resolve();
        });
        res.on('error', () => {
          clearTimeout(stopAt);
          resolve();
        });
        res.on('aborted', () => {
          clearTimeout(stopAt);
          resolve();
        });
      });
      req.on('error', () => {
        if (performance.now() < deadline) errors += 1;
        resolve();
      });
      req.end();
    });
    done += 1;
  }
  agent.destroy();
}

await Promise.all(Array.from({ length: conns }, () => connection()));
const seconds = (Math.min(performance.now(), durationS > 0 ? deadline : Infinity) - startedAt) / 1000;
latencies.sort((a, b) => a - b);
ttfbs.sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({
    completed,
    errors,
    unfinished: 0,
    timedOut: false,
    bytes,
    seconds,
    status,
    latencyMs: { p50: percentile(latencies, 0.5), p90: percentile(latencies, 0.9), p99: percentile(latencies, 0.99), max: latencies.at(-1) ?? 0 },
    ttfbMs: { p50: percentile(ttfbs, 0.5), p99: percentile(ttfbs, 0.99), max: ttfbs.at(-1) ?? 0 },
  })}\n`,
);
