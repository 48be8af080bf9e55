import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { icuDataRelease, icuDataSymbol, memoryRelease } from './memory-release.ts';

test('a release collects garbage before it trims', () => {
  const calls: string[] = [];
  const release = memoryRelease({ collect: () => calls.push('collect'), trim: () => (calls.push('trim'), true) });
  assert.ok(release);
  release();
  assert.deepEqual(calls, ['collect', 'trim']);
});

test('a release runs the part it has', () => {
  const calls: string[] = [];
  memoryRelease({ trim: () => (calls.push('trim'), true) })?.();
  memoryRelease({ collect: () => calls.push('collect') })?.();
  assert.deepEqual(calls, ['trim', 'collect']);
});

test('no release without a GC or a trim', () => {
  assert.equal(memoryRelease({}), undefined);
});

test('a release drops ICU data last, after the GC and the trim', () => {
  const calls: string[] = [];
  memoryRelease({ collect: () => calls.push('collect'), trim: () => (calls.push('trim'), true), releaseIcuData: () => calls.push('icu') })?.();
  memoryRelease({ releaseIcuData: () => calls.push('icu alone') })?.();
  assert.deepEqual(calls, ['collect', 'trim', 'icu', 'icu alone']);
});

test("ICU's data symbol is named after ICU's major version", () => {
  assert.equal(icuDataSymbol('78.2'), 'icudt78_dat');
  assert.equal(icuDataSymbol('72.1'), 'icudt72_dat');
  assert.equal(icuDataSymbol('no version'), null);
  assert.equal(icuDataSymbol(''), null);
  assert.equal(icuDataRelease(undefined), undefined, 'no addon, nothing to release with');
  assert.equal(icuDataRelease(() => 1, null), undefined, 'no ICU, nothing to release');
  const asked: string[] = [];
  icuDataRelease((symbol) => (asked.push(symbol), 1), 'icudt78_dat')?.();
  assert.deepEqual(asked, ['icudt78_dat']);
});

test("the addon drops ICU's pages after the first Intl use, and Intl still works", () => {
  const addonFile = path.resolve(import.meta.dirname, '../../build/edge-net.node');
  assert.ok(existsSync(addonFile), 'the addon is built by npm install (scripts/build.mjs)');
  // In a child: the pages counted are the whole process's, and a test runner's are not ours.
  const script = `
    const addon = require(${JSON.stringify(addonFile)});
    const binaryRss = () => {
      let kib = 0, ours = false;
      for (const line of require('fs').readFileSync('/proc/self/smaps', 'utf8').split('\\n')) {
        if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) ours = line.trim().endsWith(process.execPath) || /libicudata/.test(line);
        else if (ours && line.startsWith('Rss:')) kib += Number(line.split(/\\s+/)[1]);
      }
      return kib;
    };
    const format = () => new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(Date.UTC(2026, 11, 7)));
    const first = format();
    const before = binaryRss();
    const released = addon.releaseIcuData(${JSON.stringify(icuDataSymbol())});
    const after = binaryRss();
    const again = format();
    const other = new Intl.NumberFormat('zh-CN').format(1234567.5);
    console.log(JSON.stringify({ first, again, other, released, before, after, missing: addon.releaseIcuData('icudt0_no_such_symbol') }));
  `;
  const result = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as Record<string, unknown>;
  assert.equal(result.first, '12/07/2026');
  assert.equal(result.again, '12/07/2026', 'Intl reads its data again after the release');
  assert.equal(result.other, '1,234,567.5');
  assert.ok((result.released as number) > 1 << 20, `ICU's data advised: ${String(result.released)} bytes`);
  assert.ok((result.before as number) - (result.after as number) > 2048, `the binary's resident pages fell by more than 2 MiB: ${String(result.before)} -> ${String(result.after)} KiB`);
  assert.equal(result.missing, 0, 'an unknown symbol is a no-op');
});
