/**
 * V8 flags for the node process, set while start.js is evaluated: start.ts imports this module
 * before any other, so the flags hold before the dependencies' code runs and warms up. Flags that
 * V8 reads only at its start (--max-semi-space-size, --expose-gc) stay on the command lines.
 *
 * Both trade the optimising compiler for memory on a small box (bench/README.md, "Where the memory
 * goes"): the bytes the node moves go through sendfile, the addon, WebAssembly and crypto, not
 * through hot JavaScript, so the baseline compilers run it as fast as measured.
 */
import v8 from 'node:v8';

// undici's HTTP parser is WebAssembly: optimising it took ~36 MiB of malloc'd memory at the
// first request to the master, ~10 MiB of which malloc kept. Baseline code parses as well.
v8.setFlagsFromString('--liftoff-only');
// TurboFan's code pages and compile memory: 5-9 MiB of RSS idle and serving, with no measured
// loss in the sync, herd and slow-tablet benchmarks.
v8.setFlagsFromString('--no-opt');
