// Bundles start.ts into start.js (the file operators run: `node start.js --port 8001`).
// esbuild rather than tsc: one fast step, one output file at the top level.
//
// The dependencies are bundled too, minified, for memory (bench/README.md, "Where the memory
// goes"): V8 keeps the source text of every script it loaded for as long as the process runs, and
// node_modules' files loaded one by one came to ~3 MB of source, some of it as UTF-16; one minified
// ASCII start.js holds the same code in ~1.3 MB, and its heap after start is ~3 MiB smaller.
// archiver stays in node_modules, loaded by the first diagnostics export as before; node_modules
// is still installed (archiver, the panel's uPlot). The linked map keeps stack traces readable
// under `node --enable-source-maps`.
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
  external: ['archiver'],
  minify: true,
  // Class and function names as written: error names and log lines read them.
  keepNames: true,
  // The licences stay in node_modules; a comment's non-ASCII letter would cost the whole file.
  legalComments: 'none',
  sourcemap: 'linked',
  logLevel: 'warning',
  // The CommonJS dependencies (undici, winston, ...) require Node's modules.
  banner: {
    js: [
      '// Generated from start.ts by scripts/build.mjs - do not edit.',
      "import { createRequire as __edgeCreateRequire } from 'node:module';",
      'const require = __edgeCreateRequire(import.meta.url);',
    ].join('\n'),
  },
});
// V8 keeps a script's source as Latin-1 only when every character fits; one other character and
// the whole file is kept as UTF-16, twice the bytes. esbuild escapes strings but not regular
// expressions, so a literal character there fails the build, naming where.
for (const file of built.outputFiles.filter((f) => f.path.endsWith('.js'))) {
  const at = file.text.search(/[^\u0000-\u00ff]/);
  if (at >= 0) throw new Error(`${path.basename(file.path)}: a character beyond Latin-1 at offset ${at} (${JSON.stringify(file.text.slice(Math.max(0, at - 40), at + 10))}): escape it in the source`);
}
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
