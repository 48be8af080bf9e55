import type { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';

export interface DiagnosticsInput {
  nodeId: string;
  logLines: string[];
  /** Already redacted. */
  config: unknown;
  status: unknown;
  versions: unknown;
  metrics: string;
  /** Secrets to scrub from every text in the archive, should one have reached a log line. */
  secrets: string[];
  now: Date;
}

export interface DiagnosticsDeps {
  collect: () => Promise<DiagnosticsInput>;
}

/** A zip for support: recent logs, redacted config, status, metrics and versions. */
export async function buildDiagnosticsZip(input: DiagnosticsInput): Promise<Buffer> {
  const scrub = (text: string) => input.secrets.filter((s) => s.length > 0).reduce((out, secret) => out.replaceAll(secret, '<redacted>'), text);
  const json = (value: unknown) => scrub(`${JSON.stringify(value, null, 2)}\n`);
  // Loaded on the first export, not at start: archiver and its streams cost a node ~6 MiB of
  // memory it would carry all its life for a button an operator presses once in a while.
  const { ZipArchive } = await import('archiver');
  const archive = new ZipArchive({ zlib: { level: 6 } });
  const chunks: Buffer[] = [];
  archive.on('data', (chunk: Buffer) => chunks.push(chunk));
  const finished = new Promise<void>((resolve, reject) => {
    archive.on('end', () => resolve());
    archive.on('error', reject);
    archive.on('warning', reject);
  });
  const date = input.now;
  archive.append(
    [
      `meeting-edge diagnostics for node ${input.nodeId}`,
      `created ${date.toISOString()}`,
      '',
      'logs.txt       the most recent log lines kept in memory',
      'config.json    the effective configuration (secrets redacted)',
      'status.json    /api/status at the time of the export',
      'metrics.txt    /metrics at the time of the export',
      'versions.json  program, runtime and library versions',
      '',
    ].join('\n'),
    { name: 'README.txt', date },
  );
  archive.append(scrub(input.logLines.join('\n') + (input.logLines.length ? '\n' : '')), { name: 'logs.txt', date });
  archive.append(json(input.config), { name: 'config.json', date });
  archive.append(json(input.status), { name: 'status.json', date });
  archive.append(scrub(input.metrics), { name: 'metrics.txt', date });
  archive.append(json(input.versions), { name: 'versions.json', date });
  await archive.finalize();
  await finished;
  return Buffer.concat(chunks);
}

export function registerDiagnosticsRoutes(app: Hono<AppEnv>, deps: DiagnosticsDeps): void {
  app.get('/api/diagnostics', async (c) => {
    const input = await deps.collect();
    const zip = await buildDiagnosticsZip(input);
    const stamp = input.now.toISOString().replace(/[:.]/g, '-');
    const name = `meeting-edge-diagnostics-${input.nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}-${stamp}.zip`;
    return c.body(new Uint8Array(zip), 200, {
      'content-type': 'application/zip',
      'content-disposition': `attachment; filename="${name}"`,
      'content-length': String(zip.length),
      'cache-control': 'no-store',
    });
  });
}
