/**
 * Entry point: `node start.js --port 8001` (start.js is this file bundled by `npm run build`).
 */
// First: the process's settings must hold before the other modules' code runs.
import { compileHotCodeFromNow } from './src/node/process-settings.ts';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './src/config/config-store.ts';
import { parseCliOptions, readEnvironment, USAGE, UsageError } from './src/config/cli-options.ts';
import { EdgeNode } from './src/edge-node.ts';
import { newSiteKey } from './src/site/site-key.ts';
import { UnusablePathError } from './src/node/usable-path.ts';
import { readPackageVersion } from './src/node/version.ts';

const programDir = path.dirname(fileURLToPath(import.meta.url));


async function main(): Promise<number> {
  const shutdown = handleStopSignals();
  let options;
  try {
    options = parseCliOptions(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`error: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  if (options.newSiteKey) {
    // Only the key on stdout, so `KEY=$(node start.js --new-site-key)` works.
    console.log(newSiteKey());
    return 0;
  }
  if (options.version) {
    console.log(`meeting-edge ${readPackageVersion(path.join(programDir, 'package.json'))}`);
    return 0;
  }
  let node: EdgeNode;
  try {
    node = await EdgeNode.start({
      configPath: options.configPath,
      port: options.port,
      portSource: options.portSource,
      host: options.host,
      publicDir: path.join(programDir, 'public'),
      environment: readEnvironment(process.env),
    });
  } catch (error) {
    if (error instanceof UnusablePathError) {
      console.error(`meeting-edge: refusing to start: ${error.message}`);
      return 78; // EX_CONFIG
    }
    if (error instanceof ConfigError) {
      // One line, as every refusal: journalctl and the README's promise.
      console.error(`meeting-edge: refusing to start: invalid configuration: ${error.message}`);
      return 78; // EX_CONFIG
    }
    const why = listenFailure(error as NodeJS.ErrnoException, options.host, options.portSource);
    if (why) {
      console.error(`meeting-edge: cannot listen: ${why}`);
      return 1;
    }
    throw error;
  }
  // Tablets make the request path hot; until the first one asks, the node's code stays as compiled
  // while it started (an idle node, fresh or between syncs, keeps no optimised code).
  node.stats.events.once('request', compileHotCodeFromNow);
  console.log(`meeting-edge ${node.config.current.nodeId} listening on ${node.localUrl}; control panel: ${node.localUrl}/static/index.html`);

  return new Promise<number>((resolve) => {
    shutdown.onRequest = (signal) => {
      node.logger.info(`${signal} received: shutting down`);
      node.stop().then(
        () => resolve(0),
        (error: Error) => {
          console.error(`shutdown failed: ${error.message}`);
          resolve(1);
        },
      );
    };
    // A signal that came while the node was starting: it stops now that it can.
    if (shutdown.pending) shutdown.onRequest(shutdown.pending);
  });
}

/**
 * SIGINT/SIGTERM handling, installed before the node starts. conf → atomically → when-exit hooks
 * both signals at import and re-sends the signal to this process after its own cleanup, which
 * would kill us mid-shutdown (downloads cut, no unregister): ours is the only handler; conf writes
 * are atomic renames anyway. Installed late (after the node printed that it listens), a signal
 * that arrived in between went to when-exit's handle, which removing its listener closed with the
 * signal still pending: the node never stopped. A second signal exits at once.
 */
function handleStopSignals(): { pending: NodeJS.Signals | null; onRequest: ((signal: NodeJS.Signals) => void) | null } {
  const shutdown: { pending: NodeJS.Signals | null; onRequest: ((signal: NodeJS.Signals) => void) | null } = { pending: null, onRequest: null };
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      console.error(`${signal} again: exiting now`);
      process.exit(130);
    }
    if (shutdown.onRequest) shutdown.onRequest(signal);
    else shutdown.pending = signal;
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.removeAllListeners(signal);
    process.on(signal, onSignal);
  }
  return shutdown;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(`meeting-edge: fatal: ${error.stack ?? error.message}`);
    process.exit(1);
  },
);

/** One line naming what to change, for the ways listening fails; null for anything else. */
function listenFailure(error: NodeJS.ErrnoException & { port?: number }, host: string, portSource: string | undefined): string | null {
  const port = portSource ?? 'nodePort in the config';
  switch (error.code) {
    case 'EADDRINUSE':
      return `port ${error.port ?? ''} on ${host} is in use by another program: stop it, or choose another port (${port})`;
    case 'EACCES':
      return `no permission to listen on port ${error.port ?? ''} (ports below 1024 need privileges): choose another port (${port})`;
    case 'EADDRNOTAVAIL':
      return `${host} is not an address of this machine: pass another --host (or EDGE_HOST)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return `--host ${host} is neither an address nor a host name that resolves (${error.code}): pass another --host (or EDGE_HOST)`;
    default:
      return null;
  }
}
