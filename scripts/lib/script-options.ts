/**
 * Command-line options of the on-demand scripts (simulate, soak): `--help` prints the usage and
 * exits 0; an unknown or malformed flag is one line and the usage on stderr, exit 2, not a stack trace.
 */
export function parseOptions<T extends { values: { help?: boolean } }>(parse: () => T, usage: string): T {
  let parsed: T;
  try {
    parsed = parse();
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${usage}`);
    process.exit(2);
  }
  if (parsed.values.help) {
    console.log(usage);
    process.exit(0);
  }
  return parsed;
}
