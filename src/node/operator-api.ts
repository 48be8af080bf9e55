import type { ConfigStore } from '../config/config-store.ts';
import { configSchema } from '../config/schema.ts';
import type { AdminEventHub } from '../http/admin/events.ts';
import type { AdminDeps } from '../http/admin/index.ts';
import type { NodeMetrics } from '../http/admin/metrics.ts';
import type { TrafficHistory } from '../http/admin/traffic-history.ts';
import type { LogRing } from '../log/log-ring.ts';
import type { Logger } from '../log/logger.ts';
import type { ConfigApplyResult } from '../node-events.ts';
import type { NodePolicy } from '../policy.ts';
import { collectDiagnostics } from './diagnostics.ts';
import type { Maintenance } from './maintenance.ts';

/** The node as the operator's API acts on it (EdgeNode). */
export interface OperatorNode {
  readonly adminToken: string;
  readonly serving: boolean;
  readonly version: string;
  status(): Promise<object>;
  updateConfig(patch: Record<string, unknown>): Promise<ConfigApplyResult>;
  stopService(): Promise<void>;
  startService(): Promise<void>;
}

export interface OperatorApiParts {
  node: OperatorNode;
  config: ConfigStore;
  logger: Logger;
  policy: Pick<NodePolicy, 'authLimit'>;
  logs: LogRing;
  storageRoot: string;
  /** Polls and reconciles now; resolves with the poll's outcome (node/lifecycle.ts). */
  syncNow: () => Promise<{ ok: boolean; error: string | null }>;
  events: AdminEventHub;
  traffic: TrafficHistory;
  metrics: NodeMetrics;
  maintenance: Maintenance;
}

/**
 * What the admin API (http/admin) reads and does, from the node's parts: config, service
 * stop/start, status, events, logs, diagnostics, health and the scrub on demand.
 */
export function operatorApi(parts: OperatorApiParts): AdminDeps {
  const { node, config, logger, logs, metrics, maintenance } = parts;
  const current = () => config.current;
  const serving = () => node.serving;
  const status = () => node.status();
  return {
    logger,
    token: () => node.adminToken,
    authLimit: parts.policy.authLimit,
    config: { current, schema: configSchema, update: (patch) => node.updateConfig(patch) },
    service: {
      serving,
      stop: () => node.stopService(),
      start: () => node.startService(),
      syncNow: parts.syncNow,
      status,
    },
    events: parts.events,
    traffic: parts.traffic,
    logs,
    diagnostics: {
      collect: () =>
        collectDiagnostics({
          config: current,
          logs,
          status,
          metrics: async () => (await metrics.render()).body,
          version: node.version,
          adminToken: () => node.adminToken,
        }),
    },
    health: {
      storageRoot: parts.storageRoot,
      configValid: () => config.validate(current()).ok,
      serving,
      metrics,
      metricsPublic: () => current().metricsPublic,
    },
    maintenance: {
      scrubNow: () => maintenance.scrubNow(),
      scrubbing: () => maintenance.scrubbing(),
      scrubStatus: () => maintenance.scrubStatus(),
    },
  };
}
