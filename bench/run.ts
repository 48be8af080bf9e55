/**
 * `npm run bench` — the node at meeting start, measured beside nginx on the same machine.
 *
 *   npm run bench                      all ten scenarios (about 35 minutes)
 *   npm run bench -- --quick           smaller packages, shorter runs (about 2 minutes)
 *   npm run bench -- --only 1,3        some scenarios only
 *   npm run bench -- --install-nginx   apt-get install nginx first (root; Debian)
 *   npm run bench -- --keep            keep the scratch folder (packages, configs, logs)
 *
 * Prints one table (node figure, comparison measured in the same run, ratio, target) and writes
 * every raw figure to bench/results/<timestamp>.json. Not a test: nothing here fails CI.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildLoadgen, LoadClient } from './load.ts';
import { scenarioIdleMemory, scenarioShapedRoom, scenarioSlowTablets } from './memory.ts';
import { findNginx, installNginx, nginxVersion } from './nginx.ts';
import { runServeScenarios, scenarioHerd, scenarioPreheat, scenarioSync, scenarioTokenChange, type BenchContext, type Row } from './scenarios.ts';

const SCENARIOS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

function parseOptions(): { quick: boolean; only: Set<number> | null; installNginx: boolean; keep: boolean } {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'install-nginx': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log('usage: npm run bench -- [--quick] [--only 1,2,...] [--install-nginx] [--keep]');
    process.exit(0);
  }
  let only: Set<number> | null = null;
  if (values.only) {
    only = new Set(values.only.split(',').map((n) => Number(n.trim())));
    for (const n of only) {
      if (!SCENARIOS.includes(n)) {
        console.error(`--only: no scenario ${n} (there are ${SCENARIOS.join(', ')})`);
        process.exit(2);
      }
    }
  }
  return { quick: values.quick, only, installNginx: values['install-nginx'], keep: values.keep };
}

function format(value: number | null, unit: string): string {
  if (value === null || !Number.isFinite(value)) return '-';
  switch (unit) {
    case 'GB/s':
      return `${value.toFixed(2)} GB/s`;
    case 's':
      return `${value.toFixed(value < 10 ? 2 : 1)} s`;
    case 'MiB':
      return `${value.toFixed(0)} MiB`;
    case 'KiB':
      return `${value.toFixed(1)} KiB`;
    case 'MB/s':
      return `${value.toFixed(0)} MB/s`;
    case 'req/s':
      return `${Math.round(value)} req/s`;
    case 'ms':
      return `${value.toFixed(1)} ms`;
    case 'per':
      return value.toFixed(2);
    case 'bytes':
      return value >= 1024 * 1024 ? `${(value / 1024 / 1024).toFixed(1)} MiB` : `${Math.round(value / 1024)} KiB`;
    default:
      return `${Math.round(value)}`;
  }
}

function table(rows: Row[]): string {
  const header = ['#', 'scenario', 'metric', 'node', 'comparison', 'ratio', 'target', 'ok'];
  const lines = rows.map((row) => [
    String(row.scenario),
    row.name,
    row.metric,
    format(row.node, row.unit),
    row.comparison === null ? row.comparisonLabel : `${row.comparisonLabel} ${format(row.comparison, row.unit)}`,
    row.ratio === null ? '' : `${row.ratio.toFixed(2)}x`,
    row.target,
    row.ok === null ? '' : row.ok ? 'yes' : 'NO',
  ]);
  const widths = header.map((title, i) => Math.max(title.length, ...lines.map((line) => (line[i] ?? '').length)));
  const render = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [render(header), render(widths.map((w) => '-'.repeat(w))), ...lines.map(render)].join('\n');
}

async function main(): Promise<void> {
  const options = parseOptions();
  const log = (line: string) => console.error(`[bench] ${line}`);
  if (options.installNginx && !findNginx()) installNginx(log);
  const nginx = findNginx();
  if (!nginx) log('nginx not installed: comparisons against nginx are skipped (npm run bench -- --install-nginx)');

  const [load1] = os.loadavg();
  // Other processes on a 2-core machine change every figure; say so rather than print noise as fact.
  if ((load1 ?? 0) > 0.5) log(`load average ${(load1 ?? 0).toFixed(2)} before starting: other processes are busy, figures will be noisy`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meeting-edge-bench-'));
  const binary = buildLoadgen(dir);
  if (!binary) log('no C compiler: using the Node load client (throughput figures are then lower bounds)');
  const ctx: BenchContext = {
    options: { quick: options.quick, only: options.only },
    dir,
    load: new LoadClient(binary),
    nginx,
    log,
    rows: [],
    details: {},
  };
  const selected = SCENARIOS.filter((n) => !options.only || options.only.has(n));
  const startedAt = new Date();
  const failures: Record<string, string> = {};
  const attempt = async (label: string, run: () => Promise<void>) => {
    try {
      await run();
    } catch (error) {
      failures[label] = (error as Error).stack ?? String(error);
      log(`scenario ${label} failed: ${(error as Error).message}`);
    }
  };
  try {
    const serve = selected.filter((n) => n <= 3);
    if (serve.length) await attempt(serve.join(','), () => runServeScenarios(ctx, serve));
    if (selected.includes(4)) await attempt('4', () => scenarioSync(ctx));
    if (selected.includes(5)) await attempt('5', () => scenarioHerd(ctx));
    if (selected.includes(6)) await attempt('6', () => scenarioTokenChange(ctx));
    if (selected.includes(7)) await attempt('7', () => scenarioPreheat(ctx));
    if (selected.includes(8)) await attempt('8', () => scenarioIdleMemory(ctx));
    if (selected.includes(9)) await attempt('9', () => scenarioSlowTablets(ctx));
    if (selected.includes(10)) await attempt('10', () => scenarioShapedRoom(ctx));
  } finally {
    if (!options.keep) await rm(dir, { recursive: true, force: true });
    else log(`scratch folder kept: ${dir}`);
  }

  const cpus = os.cpus();
  const result = {
    startedAt: startedAt.toISOString(),
    seconds: (Date.now() - startedAt.getTime()) / 1000,
    options: { quick: options.quick, only: options.only ? [...options.only] : null },
    machine: {
      cores: cpus.length,
      cpu: cpus[0]?.model ?? 'unknown',
      memoryBytes: os.totalmem(),
      loadAverageAtStart: os.loadavg(),
      loadAverageAtEnd: null as number[] | null,
      node: process.version,
      nginx: nginx ? nginxVersion(nginx) : null,
      loadClient: ctx.load.kind === 'c' ? 'bench/loadgen.c' : 'bench/load-client.ts',
    },
    rows: ctx.rows,
    details: ctx.details,
    failures,
  };
  result.machine.loadAverageAtEnd = os.loadavg();
  const resultsDir = path.join(import.meta.dirname, 'results');
  await mkdir(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);

  console.log('');
  console.log(
    `meeting-edge bench${options.quick ? ' (quick)' : ''}: ${cpus.length} cores, ${result.machine.cpu}, Node ${process.version}, ` +
      `${nginx ? result.machine.nginx : 'nginx not installed'}, load client ${result.machine.loadClient}, ` +
      `load average ${os.loadavg()[0]?.toFixed(2)} (at start ${(load1 ?? 0).toFixed(2)})`,
  );
  console.log(table(ctx.rows));
  for (const label of Object.keys(failures)) console.log(`scenario ${label}: FAILED (see ${path.relative(process.cwd(), file)})`);
  console.log(`\nraw figures: ${path.relative(process.cwd(), file)}`);
}

await main();
