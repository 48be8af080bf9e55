/**
 * What the node tells about itself beyond the sync's and the store's events: the operator's stop
 * and start, and applied config changes. Emitted by node/ (lifecycle, config applier), carried to
 * the panel by http/admin/events.ts; so it lives below both.
 */
import type { NodeConfig } from './config/schema.ts';

export type NodeEventMap = {
  service: [{ serving: boolean }];
  config: [{ changed: string[]; restartRequired: string[] }];
};

/** The outcome of a config change: applied (what changed, what waits for a restart), or the fields refused. */
export type ConfigApplyResult =
  | { ok: true; changed: string[]; restartRequired: string[]; overridden: Array<{ key: string; option: string }>; config: NodeConfig }
  | { ok: false; fields: Record<string, string> };
