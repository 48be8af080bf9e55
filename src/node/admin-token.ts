import { randomBytes } from 'node:crypto';
import { ConfigError, type ConfigStore } from '../config/config-store.ts';
import type { Logger } from '../log/logger.ts';

export interface AdminTokenSources {
  /** Given by the embedding program (tests, benchmarks); wins over everything. */
  option?: string;
  /** EDGE_ADMIN_TOKEN (config/cli-options.ts). */
  environment?: string;
  /** Shows a newly generated token to the operator; null: nobody is shown (the embedder reads node.adminToken). */
  announce: ((token: string, configPath: string) => void) | null;
}

export interface AdminToken {
  /** The token in force, read on every request ('' matches nothing). */
  current: () => string;
  /**
   * With no override and none in the config: a new random token, saved and shown once. Called
   * once the node listens, so a start that fails (a busy port) neither saves nor shows a token
   * the operator would then never see again.
   */
  generateIfMissing: () => void;
}

/**
 * Decides the admin API's bearer token at start: the option or EDGE_ADMIN_TOKEN (never saved),
 * else the config's adminToken; with neither, generateIfMissing saves a new random one to the
 * config and shows it to the operator once. A config change to adminToken applies at once unless
 * an override is in force. Throws ConfigError for an override the schema refuses.
 */
export function resolveAdminToken(config: ConfigStore, sources: AdminTokenSources, logger: Logger): AdminToken {
  const override = sources.option ?? sources.environment;
  if (override !== undefined) {
    const checked = config.validate({ ...config.current, adminToken: override });
    if (!checked.ok) {
      const source = sources.option !== undefined ? 'adminToken option' : 'EDGE_ADMIN_TOKEN';
      throw new ConfigError(`${source} ${checked.fields.adminToken ?? 'is invalid'}`, { adminToken: checked.fields.adminToken ?? 'is invalid' });
    }
    return { current: () => override, generateIfMissing: () => {} };
  }
  return {
    current: () => config.current.adminToken ?? '',
    generateIfMissing: () => {
      if (config.current.adminToken) return;
      const token = randomBytes(24).toString('base64url');
      // Written with the rest of the file's first write: not a change, so no "config: changed adminToken".
      config.completeFile({ adminToken: token });
      // Never in the log (logs go into diagnostics zips); once on the console for the operator.
      logger.info(`admin token generated and saved as adminToken in ${config.filePath}`);
      sources.announce?.(token, config.filePath);
    },
  };
}

/** The default announcement: on the console, once. */
export function printAdminToken(token: string, configPath: string): void {
  console.log(`meeting-edge: admin token for the control panel and API (saved in ${configPath}; shown only now):\n  ${token}`);
}
