import type { EnvironmentSettings } from '../config/cli-options.ts';
import type { Logger } from '../log/logger.ts';
import type { NodePolicy } from '../policy.ts';
import type { SiteTierDeps } from '../sync/site-tier.ts';

/** How EdgeNode.start is asked to run (start.ts, tests, benchmarks). */
export interface EdgeNodeOptions {
  configPath: string;
  /** Overrides nodePort from the config (flag or EDGE_PORT). 0 picks a free port (tests). */
  port?: number;
  /** The start option an operator set `port` with: a nodePort saved later is then reported as overridden by it. */
  portSource?: string;
  /** Listen address; default 0.0.0.0. */
  host?: string;
  /** A ready logger (tests pass a MemoryLogger); otherwise built from the config's logging section. */
  logger?: Logger;
  /** Folder of the control panel; default ./public beside the program. */
  publicDir?: string;
  /** The EDGE_* switches (config/cli-options.ts readEnvironment; start.ts passes them). Default: none set. */
  environment?: Partial<EnvironmentSettings>;
  /**
   * Admin token overriding EDGE_ADMIN_TOKEN and the config's adminToken (tests, benchmarks).
   * With none, the config's token is used, or one is generated and saved on first start.
   */
  adminToken?: string;
  /**
   * Shows a newly generated admin token to the operator. Default: printed on the console, unless
   * a logger was passed in (tests, embedding), which then read node.adminToken.
   */
  announceAdminToken?: (token: string, configPath: string) => void;
  /** Overrides of the operating policy (policy.ts): tests and benchmarks run shorter. */
  policy?: Partial<NodePolicy>;
  /** Site tier timings and seed choice (tests: shorter waits, nodes that disagree on the seed). */
  site?: Pick<SiteTierDeps, 'pickSeed' | 'notFoundRetryMs' | 'busyRetryMs' | 'buildAskTimeoutMs' | 'membersMaxAgeMs'>;
}
