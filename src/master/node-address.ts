import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';

export interface AddressSettings {
  usePublicAddress: boolean;
  publicIp: string | null;
  publicPort: number | null;
}

/**
 * The address the master hands to tablets: publicIp:publicPort when configured, else the first
 * non-internal IPv4 of this machine with the port actually listened on. Never a hostname lookup,
 * which on Debian-like systems gives 127.0.1.1 and sends every tablet to itself.
 */
export function resolveNodeAddress(
  settings: AddressSettings,
  listenPort: number,
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): { address: string; source: 'public' | 'interface' | 'loopback' } {
  if (settings.usePublicAddress && settings.publicIp) {
    return { address: `${formatHost(settings.publicIp)}:${settings.publicPort ?? listenPort}`, source: 'public' };
  }
  for (const name of Object.keys(interfaces)) {
    for (const info of interfaces[name] ?? []) {
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

function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
