/**
 * The command line and the environment: the only module that reads EDGE_* variables (start.ts
 * hands it the environment). Everything else an operator sets is in node_config.json (schema.ts).
 */
import { parseArgs } from 'node:util';

export interface CliOptions {
  port?: number;
  /** Which start option set `port`: then it wins over nodePort in the file for this process. */
  portSource?: '--port' | 'EDGE_PORT';
  host: string;
  configPath: string;
  help: boolean;
  /** Present (true) only when --version was given. */
  version?: true;
  /** Present (true) only when --new-site-key was given: print a fresh site key and exit. */
  newSiteKey?: true;
}

/** The EDGE_* switches of the running node that have no flag (start.ts passes them to EdgeNode). */
export interface EnvironmentSettings {
  /** EDGE_ADMIN_TOKEN, trimmed; wins over the config's adminToken and is never saved. Unset when blank. */
  adminToken?: string;
  /** EDGE_SITE_KEY, trimmed; wins over peers.key in the config and is never saved. Unset when blank. */
  siteKey?: string;
  /** false when EDGE_ZERO_COPY=0: package bytes are copied through buffers instead of sendfile(2). */
  zeroCopy: boolean;
  /** false when EDGE_BURST_ACCEPT=0: connections are accepted one per event-loop turn, as Node does. */
  burstAccept: boolean;
  /** false when EDGE_BODY_HANDOFF=0: every package body is pumped by JavaScript, none handed to the addon's event-loop transfers. */
  bodyHandOff: boolean;
}

export const USAGE = `meeting-edge: file-distribution edge node for the paperless meeting system

Usage: node start.js [--port N] [--host ADDR] [--config PATH]

  --port N        port to listen on (env EDGE_PORT; default: nodePort from the config, 8001)
  --host ADDR     address to listen on (env EDGE_HOST; default 0.0.0.0)
  --config PATH   config file (env EDGE_CONFIG; default ./node_config.json)
  --version       print the version and exit
  --new-site-key  print a fresh site key (for peers.key or EDGE_SITE_KEY) and exit
  --help          show this help

Environment only:
  EDGE_ADMIN_TOKEN    admin API token; wins over adminToken in the config, never saved
  EDGE_SITE_KEY       the site key; wins over peers.key in the config, never saved
  EDGE_ZERO_COPY=0    copy package bytes through buffers instead of sendfile(2)
  EDGE_BURST_ACCEPT=0 accept connections one per event-loop turn
  EDGE_BODY_HANDOFF=0 send every package body from JavaScript, none from the addon's event-loop transfers

Precedence: flag > environment > config file > default.`;

export class UsageError extends Error {}

function parsePort(value: string, source: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 65535) {
    throw new UsageError(`${source} must be a port number from 1 to 65535, got "${value}"`);
  }
  return Number(value);
}

/** Flags win over EDGE_* environment variables; the config file fills the rest later. */
export function parseCliOptions(argv: string[], env: NodeJS.ProcessEnv): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
        'new-site-key': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const portText = parsed.port ?? env.EDGE_PORT;
  const host = parsed.host ?? env.EDGE_HOST ?? '0.0.0.0';
  if (host.trim() === '') throw new UsageError('--host must not be empty');
  return {
    port: portText === undefined ? undefined : parsePort(portText, parsed.port !== undefined ? '--port' : 'EDGE_PORT'),
    ...(portText === undefined ? {} : { portSource: parsed.port !== undefined ? ('--port' as const) : ('EDGE_PORT' as const) }),
    host,
    configPath: parsed.config ?? env.EDGE_CONFIG ?? './node_config.json',
    help: parsed.help ?? false,
    ...(parsed.version ? { version: true as const } : {}),
    ...(parsed['new-site-key'] ? { newSiteKey: true as const } : {}),
  };
}

/** The switches of the running node that only the environment sets (see USAGE). */
export function readEnvironment(env: NodeJS.ProcessEnv): EnvironmentSettings {
  const token = env.EDGE_ADMIN_TOKEN?.trim();
  const siteKey = env.EDGE_SITE_KEY?.trim();
  return {
    ...(token ? { adminToken: token } : {}),
    ...(siteKey ? { siteKey } : {}),
    zeroCopy: env.EDGE_ZERO_COPY !== '0',
    burstAccept: env.EDGE_BURST_ACCEPT !== '0',
    bodyHandOff: env.EDGE_BODY_HANDOFF !== '0',
  };
}
