// Bundles start.ts into start.js (the file operators run: `node start.js --port 8001`).
// esbuild rather than tsc: one fast step, one output file at the top level, dependencies
// left external so node_modules stays the single source of library code.
import { build } from 'esbuild';

await build({
  entryPoints: ['start.ts'],
  outfile: 'start.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: 'inline',
  logLevel: 'warning',
  banner: { js: '// Generated from start.ts by scripts/build.mjs - do not edit.' },
});
