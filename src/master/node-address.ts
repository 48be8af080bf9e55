import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

export interface AddressSettings {
  usePublicAddress: boolean;
  publicIp: string | null;
  publicPort: number | null;
}

/** Listening on every address of the machine (IPv4, or IPv4 and IPv6). */
export function isWildcardHost(host: string): boolean {
  return host === '' || host === '0.0.0.0' || host === '::' || host === '[::]';
}

export type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>;

export interface ResolvedAddress {
  address: string;
  /** unlisted: the interfaces could not be listed (e.g. a sandbox without AF_NETLINK); `error` says why. */
  source: 'public' | 'listen' | 'interface' | 'loopback' | 'unlisted';
  error?: string;
}

/**
 * The machine's interfaces, or the error listing them: libuv reads them over a netlink socket,
 * which a sandbox may forbid (systemd's RestrictAddressFamilies without AF_NETLINK: "Unknown
 * system error 97"). That costs the node only the address it could have guessed, not its start.
 */
export function listInterfaces(list: () => Interfaces = networkInterfaces): Interfaces | { error: string } {
  try {
    return list();
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/**
 * The address the master hands to tablets: publicIp:publicPort when configured; else, when the
 * node listens on one specific address (--host), that address; else the first non-internal IPv4
 * of this machine, with the port actually listened on. Never a hostname lookup, which on
 * Debian-like systems gives 127.0.1.1 and sends every tablet to itself. The interfaces are listed
 * only when needed; when they cannot be, loopback is registered and the source says `unlisted`.
 */
export function resolveNodeAddress(
  settings: AddressSettings,
  listenPort: number,
  interfaces: Interfaces | (() => Interfaces | { error: string }) = () => listInterfaces(),
  listenHost = '0.0.0.0',
): ResolvedAddress {
  if (settings.usePublicAddress && settings.publicIp) {
    return { address: `${formatHost(settings.publicIp)}:${settings.publicPort ?? listenPort}`, source: 'public' };
  }
  // Bound to one address: any other would send tablets where nothing answers.
  if (!isWildcardHost(listenHost)) return { address: `${formatHost(unbracket(listenHost))}:${listenPort}`, source: 'listen' };
  const listed = typeof interfaces === 'function' ? interfaces() : interfaces;
  if (typeof listed.error === 'string') return { address: `127.0.0.1:${listenPort}`, source: 'unlisted', error: listed.error };
  for (const name of Object.keys(listed)) {
    for (const info of (listed as Interfaces)[name] ?? []) {
      // `internal` alone is not enough: loopback aliases such as 127.0.1.1 can sit on an interface
      // not flagged internal, and tablets reaching 127.x reach themselves.
      if (info.family === 'IPv4' && !info.internal && !info.address.startsWith('127.') && !info.address.startsWith('169.254.')) {
        return { address: `${info.address}:${listenPort}`, source: 'interface' };
      }
    }
  }
  // A machine with no network but loopback: tablets cannot reach it anyway; say so in the log.
  return { address: `127.0.0.1:${listenPort}`, source: 'loopback' };
}

/**
 * Why tablets may not reach the registered `address` (host:port) on a node listening on
 * `listenHost`:`listenPort`; null when the node listens there (a wildcard listens everywhere).
 * A NAT or proxy forwarding the address is the one good reason for a mismatch.
 */
export function addressMismatch(address: string, listenHost: string, listenPort: number): string | null {
  const match = /^(.*):(\d+)$/.exec(address);
  if (!match) return null;
  const host = unbracket(match[1] ?? '');
  const port = Number(match[2]);
  const hostOk = isWildcardHost(listenHost) || host.toLowerCase() === unbracket(listenHost).toLowerCase();
  if (hostOk && port === listenPort) return null;
  const listening = `${isWildcardHost(listenHost) ? 'every address' : formatHost(unbracket(listenHost))} port ${listenPort}`;
  return `the address registered for tablets, ${address}, is not one this node listens on (${listening}); tablets reach it only if a NAT or proxy forwards it here`;
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
