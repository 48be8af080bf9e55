import { getRequestListener } from '@hono/node-server';
import { createServer, type Server } from 'node:http';
import type { Hono } from 'hono';
import type { EnvironmentSettings } from '../config/cli-options.ts';
import type { Logger } from '../log/logger.ts';
import type { NodePolicy } from '../policy.ts';
import { loadBodyHandOff, type BodyHandOff } from '../http/body-handoff.ts';
import { BurstAccept, loadAcceptor } from '../http/burst-accept.ts';
import { createDownloadListener, type DownloadDeps } from '../http/download-route.ts';
import { loadNetAddon } from '../http/net-addon.ts';
import { SharedReadFiles } from '../http/shared-files.ts';
import { SharedPackageFiles } from '../http/shared-package-files.ts';
import { TailLimit } from '../http/tail-send.ts';
import { loadZeroCopy } from '../http/zero-copy.ts';

export interface HttpFrontParts {
  downloads: Omit<DownloadDeps, 'zeroCopy' | 'handOff' | 'tailing' | 'tailFiles' | 'packageFiles'>;
  /** The Hono app (panel, admin API), given the complete download deps for its own download routes. */
  app: (downloads: DownloadDeps) => Pick<Hono<never>, 'fetch'>;
  environment?: Partial<EnvironmentSettings>;
  policy: NodePolicy;
  logger: Logger;
}

/**
 * The node's one HTTP server. Package downloads are answered before Hono: its HEAD handling
 * re-dispatches through a slow Response path (see bench/README.md), and the herd at meeting start
 * is exactly these requests. Everything else is Hono. The native helpers (sendfile, burst accept,
 * the body hand-off) are loaded here, once, when the platform has them.
 */
export function createHttpFront(parts: HttpFrontParts): { server: Server; burstAccept: BurstAccept | null; handOff: BodyHandOff | null } {
  const { logger, environment } = parts;
  // Loaded once (require caches it) for both of its uses.
  const addon = loadNetAddon();
  const zeroCopy = loadZeroCopy({ enabled: environment?.zeroCopy }, addon);
  logger.info(zeroCopy.zeroCopy ? 'serving packages with sendfile (zero copy)' : `serving packages by copying through buffers: ${zeroCopy.reason}`);
  const acceptor = loadAcceptor({ enabled: environment?.burstAccept }, addon);
  if (!acceptor.acceptor) logger.info(`accepting connections one per event-loop turn: ${acceptor.reason}`);
  // Without sendfile there is nothing to hand off: the pump copies.
  const handOff = zeroCopy.zeroCopy ? loadBodyHandOff({ enabled: environment?.bodyHandOff }, addon) : { handOff: null, reason: 'no sendfile' };
  if (!handOff.handOff) logger.info(`package bodies sent from JavaScript only: ${handOff.reason}`);
  const downloads: DownloadDeps = {
    ...parts.downloads,
    // Serve while downloading: tablets of a package still syncing stream the bytes already on
    // disk; bounded, so a herd cannot hold unlimited sockets and fds.
    tailing: new TailLimit(parts.policy.maxTailingClients),
    tailFiles: new SharedReadFiles(),
    // Complete packages: one descriptor per package for every response sending it.
    packageFiles: new SharedPackageFiles(parts.downloads.store),
    zeroCopy: zeroCopy.zeroCopy,
    handOff: handOff.handOff,
  };
  const honoListener = getRequestListener(parts.app(downloads).fetch);
  const downloadListener = createDownloadListener(downloads);
  const server = createServer((req, res) => {
    if (!downloadListener(req, res)) void honoListener(req, res);
  });
  // A meeting start connects every tablet at once: accept them in one turn, not one per turn.
  return { server, burstAccept: acceptor.acceptor ? new BurstAccept(server, acceptor.acceptor) : null, handOff: handOff.handOff };
}
