// Bundles start.ts into start.js (the file operators run: `node start.js --port 8001`).
// esbuild rather than tsc: one fast step, one output file at the top level, dependencies
// left external so node_modules stays the single source of library code.
//
// Each output is written beside its place and renamed onto it: test files that build and run the
// CLI run in parallel, and a process starting start.js or loading the addon while another build
// writes it must find the old file or the new one, never half of one.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

// Built in memory as start.js (so its map is start.js.map, the name start.js points to), each
// file written beside its place and renamed onto it.
const built = await build({
  entryPoints: ['start.ts'],
  outfile: 'start.js',
  write: false,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
  banner: { js: '// Generated from start.ts by scripts/build.mjs - do not edit.' },
});
// The map first: a start.js being started must find the map it names.
for (const file of [...built.outputFiles].sort((a) => (a.path.endsWith('.map') ? -1 : 1))) {
  const temp = `${file.path}.tmp-${process.pid}`;
  writeFileSync(temp, file.contents);
  renameSync(temp, file.path);
}

// The socket-calls addon (native/edge-net.c: sendfile, accept, malloc_trim; native/transfer.c:
// response bodies sent by the event loop): optional. Built with the system C
// compiler against Node's own headers (node-api, so one build works across Node versions); when
// that fails the node still runs, copying package bytes through Buffers and accepting connections
// one per event-loop turn (see src/http/net-addon.ts).
buildNetAddon();

function buildNetAddon() {
  const output = path.join('build', 'edge-net.node');
  if (process.platform !== 'linux') return;
  const includeDirs = [
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
    path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter((dir) => dir && existsSync(path.join(dir, 'node_api.h')));
  if (includeDirs.length === 0) {
    console.warn('edge-net addon not built: node_api.h not found (packages will be copied through buffers)');
    return;
  }
  mkdirSync('build', { recursive: true });
  const temp = `${output}.tmp-${process.pid}`;
  const args = ['-O2', '-shared', '-fPIC', '-Wall', '-Wextra', '-Werror', `-I${includeDirs[0]}`, 'native/edge-net.c', 'native/transfer.c', '-o', temp];
  for (const compiler of ['cc', 'gcc', 'clang']) {
    const result = spawnSync(compiler, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.status === 0) {
      renameSync(temp, output);
      return;
    }
  }
  rmSync(temp, { force: true });
  console.warn('edge-net addon not built: no working C compiler (packages will be copied through buffers)');
}
