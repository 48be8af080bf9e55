// A node:test reporter: node's own default output (spec on a terminal, TAP otherwise) with the ten
// slowest test files and the ten slowest tests (those without subtests) listed just before the
// run's closing summary, so the summary stays the last thing printed. The lists go through the base
// reporter as diagnostics, so TAP stays valid TAP. A file's time includes starting its process and
// importing its modules.
import path from 'node:path';
import { Readable } from 'node:stream';
import { spec, tap } from 'node:test/reporters';

const LISTED = 10;

export default async function* slowestTestsReporter(source) {
  const events = withSlowestLists(source);
  yield* process.stdout.isTTY ? Readable.from(events).pipe(new spec()) : tap(events);
}

async function* withSlowestLists(source) {
  const files = [];
  const tests = [];
  // A file's tests are reported children first: one deeper than the last report is a parent.
  const lastNesting = new Map();
  let listed = false;
  for await (const event of source) {
    const { type, data } = event;
    if (type === 'test:complete' && data.file && data.name === data.file) {
      files.push({ name: relative(data.file), ms: data.details.duration_ms });
    } else if ((type === 'test:pass' || type === 'test:fail') && data.file) {
      const isParent = (lastNesting.get(data.file) ?? -1) > data.nesting;
      lastNesting.set(data.file, data.nesting);
      if (!isParent && data.details?.type !== 'suite') {
        tests.push({ name: `${relative(data.file)}: ${data.name}`, ms: data.details.duration_ms });
      }
    }
    // The run's own plan comes right before its closing summary (a file's plans carry their file).
    if (!listed && type === 'test:plan' && data.nesting === 0 && !data.file) {
      listed = true;
      yield* diagnostics(files, tests);
    }
    yield event;
  }
  if (!listed) yield* diagnostics(files, tests);
}

function* diagnostics(files, tests) {
  for (const [title, entries] of [
    ['slowest test files', files],
    ['slowest tests', tests],
  ]) {
    if (entries.length === 0) continue;
    yield diagnostic(`${title}:`);
    for (const { name, ms } of [...entries].sort((a, b) => b.ms - a.ms).slice(0, LISTED)) {
      yield diagnostic(`${(ms / 1000).toFixed(1).padStart(7)} s  ${name}`);
    }
  }
}

function diagnostic(message) {
  return { type: 'test:diagnostic', data: { nesting: 0, message } };
}

function relative(file) {
  return path.relative(process.cwd(), file);
}
