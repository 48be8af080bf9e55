import { parseArgs } from 'node:util';

export interface CliOptions {
  port?: number;
  host: string;
  configPath: string;
  help: boolean;
}

export const USAGE = `meeting-edge: file-distribution edge node for the paperless meeting system

Usage: node start.js [--port N] [--host ADDR] [--config PATH]

  --port N        port to listen on (env EDGE_PORT; default: nodePort from the config, 8001)
  --host ADDR     address to listen on (env EDGE_HOST; default 0.0.0.0)
  --config PATH   config file (env EDGE_CONFIG; default ./node_config.json)
  --help          show this help

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
    host,
    configPath: parsed.config ?? env.EDGE_CONFIG ?? './node_config.json',
    help: parsed.help ?? false,
  };
}
