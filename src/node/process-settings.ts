/**
 * Settings of the node's process that must hold before the other modules' code runs: start.ts
 * imports this module before any other (bench/node-child.ts too, so the bench measures what
 * ships). Settings that V8 reads only at its start (--max-semi-space-size, --expose-gc) stay on
 * the command lines. bench/README.md, "Where the memory goes", has the figures.
 */
import v8 from 'node:v8';
import { loadNetAddon } from '../http/net-addon.ts';

// undici's HTTP parser is WebAssembly: optimising it took ~36 MiB of malloc'd memory at the
// first request to the master, ~10 MiB of which malloc kept. Baseline code parses as well.
v8.setFlagsFromString('--liftoff-only');
// The start's code (every module's top level, the config schema's compilation, the first polls)
// runs once or for a moment, and an idle node's (polls, heartbeats, syncs) a few times a minute:
// compiled to machine code it only leaves the compiler's pages, code and compile memory behind,
// 4-6 MiB within minutes. The compilers wait until tablets ask for packages.
v8.setFlagsFromString('--no-opt');
v8.setFlagsFromString('--no-sparkplug');
// Bytecode not run since the last full GC is dropped at the next one (V8's default waits several):
// the start's functions and the dependencies' setup code go with the first GCs; a function run
// again later is compiled again from the source V8 keeps, in microseconds.
v8.setFlagsFromString('--bytecode-old-age=1');
// glibc gives each thread that allocates under contention an arena of its own, up to 8 per core:
// V8's compiler and GC threads and libuv's pool kept ~7 MiB in theirs after a sync, which
// malloc_trim cannot return (live chunks spread over their pages). Two arenas, as
// MALLOC_ARENA_MAX=2 would do, set before those threads allocate.
loadNetAddon().addon?.limitMallocArenas?.(2);

/**
 * Tablets are here: from now on V8 compiles hot code as it does by default (the request path ran
 * 4 times slower interpreted: 304s and HEADs, bench scenario 3). A function that ran hot before is
 * optimised too once it runs again.
 */
export function compileHotCodeFromNow(): void {
  v8.setFlagsFromString('--sparkplug');
  v8.setFlagsFromString('--opt');
}
