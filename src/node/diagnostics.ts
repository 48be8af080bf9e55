import type { NodeConfig } from '../config/schema.ts';
import { redactConfig } from '../http/admin/config-routes.ts';
import type { DiagnosticsInput } from '../http/admin/diagnostics.ts';
import type { LogRing } from '../log/log-ring.ts';

export interface DiagnosticsSources {
  config: () => NodeConfig;
  logs: Pick<LogRing, 'recent'>;
  status: () => Promise<unknown>;
  metrics: () => Promise<string>;
  version: string;
  /** Scrubbed from every text of the zip, should it have reached a log line. */
  adminToken: () => string;
  /** The site keys in force (EDGE_SITE_KEY, peers.key, peers.previousKeys): scrubbed likewise. */
  siteKeys: () => string[];
}

/** What goes into the support zip (GET /api/diagnostics): recent logs, redacted config, status, metrics, versions. */
export async function collectDiagnostics(sources: DiagnosticsSources): Promise<DiagnosticsInput> {
  const status = await sources.status();
  const config = sources.config();
  return {
    nodeId: config.nodeId ?? 'node',
    logLines: sources.logs.recent().map((line) => line.text),
    config: redactConfig(config),
    status,
    versions: {
      'meeting-edge': sources.version,
      platform: `${process.platform} ${process.arch}`,
      ...process.versions,
    },
    metrics: await sources.metrics(),
    secrets: [sources.adminToken(), ...sources.siteKeys()],
    now: new Date(),
  };
}
