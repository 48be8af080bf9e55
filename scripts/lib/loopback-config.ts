/**
 * A node_config.json for a node that talks to a master on this machine only (loopback), as the
 * tests, benchmarks and soak runs use it: registered as 127.0.0.1, no file log, quick retries,
 * polls driven by the caller. Shared by test/helpers.ts, bench/ and scripts/ (none imports the other).
 */
export function loopbackConfig(masterPort: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    mainServerIp: '127.0.0.1',
    mainServerPort: masterPort,
    syncInterval: 10,
    // Callers drive polls themselves (syncNow); the watch between polls has tests of its own.
    watchInterval: 0,
    usePublicAddress: true,
    publicIp: '127.0.0.1',
    storage: { path: './storage' },
    network: { retryDelay: 0.05, connectionTimeout: 2, downloadTimeout: 5 },
    logging: { fileEnabled: false },
    heartbeat: { interval: 10 },
    // Off unless the caller is about it: a meeting added "now" is in the preheat window, and a
    // preheat would be one more package download where downloads are counted.
    preheat: { enabled: false },
  };
  // One level deep: an override of a section keeps the section's other keys.
  for (const [key, value] of Object.entries(overrides)) {
    const existing = base[key];
    base[key] =
      existing && typeof existing === 'object' && value && typeof value === 'object' && !Array.isArray(value)
        ? { ...(existing as object), ...(value as object) }
        : value;
  }
  return base;
}
