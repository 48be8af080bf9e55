// Runs every *.test.ts under the given folders (default: src, test and reference-master) with node's own
// test runner. Node 20's --test does not expand globs or pick up .ts files, so we list them here.
//
// Files run in parallel, each in its own process: most of the integration tests wait (throttled
// masters, timeouts, restarts) rather than compute, so more files than cores keep both cores busy.
// The unit tests (src/, reference-master/) go first, among themselves: they are short, and some
// time the code on a busy machine (a slow sendfile call), so they stay out of the heaviest part of
// the run. Then the longest integration files, then the rest of test/: a long file started late
// would finish alone. The order only changes how long the run takes. At the end the reporter
// (lib/slowest-tests-reporter.mjs) lists the ten slowest files and tests before node's summary.
// Flags are passed to node; a --test-reporter or --test-concurrency of the caller's replaces ours.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const CONCURRENCY = 4;
/** The folder of the integration tests, and its slowest files (as a run's reporter lists them). */
const INTEGRATION = 'test';
const START_FIRST = [
  'test/crash-kill.test.ts',
  'test/hostile-input.test.ts',
  'test/browser/panel.test.ts',
  'test/clients.test.ts',
  'test/config-fuzz.test.ts',
  'test/admin-api.test.ts',
];

function collect(dir, out) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) collect(full, out);
    else if (name.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

const args = process.argv.slice(2);
const roots = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));
const files = (roots.length ? roots : ['src', 'test', 'reference-master'])
  .flatMap((root) => (statSync(root).isDirectory() ? collect(root, []) : [root]))
  .sort((a, b) => startRank(a) - startRank(b) || a.localeCompare(b));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const defaults = [
  ...(flags.some((f) => f.startsWith('--test-concurrency')) ? [] : [`--test-concurrency=${CONCURRENCY}`]),
  ...(flags.some((f) => f.startsWith('--test-reporter'))
    ? []
    : [`--test-reporter=${path.join(import.meta.dirname, 'lib', 'slowest-tests-reporter.mjs')}`, '--test-reporter-destination=stdout']),
];
const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', ...defaults, ...flags, ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);

function startRank(file) {
  const relative = path.relative(process.cwd(), file).split(path.sep).join('/');
  if (!relative.startsWith(`${INTEGRATION}/`)) return 0;
  const listed = START_FIRST.indexOf(relative);
  return listed === -1 ? 1 + START_FIRST.length : 1 + listed;
}
