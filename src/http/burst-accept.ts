/**
 * Accepting a burst of connections in one turn of the event loop.
 *
 * libuv 1.46 (Node 20) accepts one connection per turn of the event loop on a listening socket: it
 * stopped looping on accept() so that processes sharing a socket take turns. When 500 tablets
 * connect the instant a meeting starts, the last waits for 499 turns, and every turn also carries
 * the bytes of the tablets already in: measured ~1 ms a turn, the last tablet was accepted (and
 * got its first byte) about 550 ms after the first, its connection having been ready in the
 * kernel's queue all along.
 *
 * So on every connection Node accepts, the rest of the kernel's accept queue is drained here
 * (accept4 through the addon: non-blocking, the queue's current length at most) and each
 * descriptor is handed to the HTTP server as a net.Socket through its 'connection' event, the
 * documented way to give it a connection. The HTTP server then treats it as its own: parser,
 * timeouts, keep-alive, closeIdleConnections and closeAllConnections. One thing differs:
 * server.close()'s callback does not wait for these, so the owner awaits `closed()` as well.
 */
import { closeSync } from 'node:fs';
import type { Server } from 'node:http';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { handleFd, loadNetAddon, type NetAddonLoad } from './net-addon.ts';

export interface Acceptor {
  /** A new connection's descriptor (>= 0) or a negative errno; -EAGAIN when the queue is empty. */
  accept(listenFd: number): number;
}

/** The peer gave up while queued, or a signal: try the next one. */
const SKIPPABLE = new Set([-(constants.errno.ECONNABORTED ?? 103), -(constants.errno.EINTR ?? 4), -(constants.errno.EPROTO ?? 71)]);
/** Most connections taken in one drain: bounds one turn (the kernel's queue holds 511 with Node's default backlog). */
const DEFAULT_MAX_PER_TURN = 1024;

/**
 * The addon's accept, unless switched off (`enabled: false`: EDGE_BURST_ACCEPT=0, read by
 * config/cli-options.ts); null: libuv accepts one per turn, as without it.
 */
export function loadAcceptor(switches: { enabled?: boolean } = {}, loaded: NetAddonLoad = loadNetAddon()): { acceptor: Acceptor | null; reason: string } {
  if (switches.enabled === false) return { acceptor: null, reason: 'switched off (EDGE_BURST_ACCEPT=0)' };
  return { acceptor: loaded.addon, reason: loaded.reason };
}

export class BurstAccept {
  readonly #server: Server;
  readonly #acceptor: Acceptor;
  readonly #maxPerTurn: number;
  readonly #open = new Set<Socket>();
  readonly #waiters: Array<() => void> = [];
  #draining = false;
  #accepted = 0;

  constructor(server: Server, acceptor: Acceptor, options: { maxPerTurn?: number } = {}) {
    this.#server = server;
    this.#acceptor = acceptor;
    this.#maxPerTurn = options.maxPerTurn ?? DEFAULT_MAX_PER_TURN;
    server.on('connection', () => this.#drain());
  }

  /** Connections accepted here (not by Node) so far. */
  get accepted(): number {
    return this.#accepted;
  }

  /** Connections accepted here that are still open. */
  get openCount(): number {
    return this.#open.size;
  }

  /** Resolves once no connection accepted here is open (server.close() does not wait for them). */
  closed(): Promise<void> {
    if (this.#open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #drain(): void {
    // Handing a connection to the server emits 'connection' again: that one is ours.
    if (this.#draining) return;
    // Without the listening descriptor nothing is drained and libuv accepts as before.
    const listenFd = handleFd(this.#server);
    if (listenFd === null) return;
    this.#draining = true;
    try {
      for (let taken = 0; taken < this.#maxPerTurn; taken++) {
        const fd = this.#acceptor.accept(listenFd);
        if (fd < 0) {
          if (SKIPPABLE.has(fd)) continue;
          // The queue is empty (EAGAIN), or an error such as EMFILE that Node's own accept meets
          // and reports on its next turn.
          break;
        }
        this.#adopt(fd);
      }
    } finally {
      this.#draining = false;
    }
  }

  #adopt(fd: number): void {
    let socket: Socket;
    try {
      // As net.Server does for its own: half-open allowed (the HTTP server's setting), no Nagle.
      socket = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
    } catch {
      closeSync(fd);
      return;
    }
    socket.setNoDelay(true);
    this.#accepted += 1;
    this.#open.add(socket);
    socket.once('close', () => {
      this.#open.delete(socket);
      if (this.#open.size > 0) return;
      for (const resolve of this.#waiters.splice(0)) resolve();
    });
    this.#server.emit('connection', socket);
  }
}
