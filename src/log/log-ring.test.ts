import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LogRing, tapLogger } from './log-ring.ts';
import { createLogger } from './logger.ts';
import { MemoryLogger } from './memory-logger.ts';

describe('LogRing', () => {
  test('keeps the last `capacity` lines, oldest first, numbered without gaps', () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const ring = new LogRing(3, () => now++);
    for (const word of ['a', 'b', 'c', 'd', 'e']) ring.push('info', word);
    assert.equal(ring.size, 3);
    assert.deepEqual(
      ring.recent().map((line) => [line.seq, line.text.split(' ').at(-1)]),
      [
        [3, 'c'],
        [4, 'd'],
        [5, 'e'],
      ],
    );
    assert.deepEqual(
      ring.recent(2).map((line) => line.seq),
      [4, 5],
    );
    assert.match(ring.recent(1)[0]!.text, /^2026-01-01T00:00:00\.004Z INFO {2}e$/);
  });
});

describe('tapLogger', () => {
  test('records what the logger writes, at its level, and forwards every call', () => {
    const inner = new MemoryLogger();
    inner.level = 'info';
    const ring = new LogRing(10);
    const logger = tapLogger(inner, ring);
    logger.debug('hidden');
    logger.info('shown');
    logger.error('bad');
    assert.deepEqual(inner.lines, ['debug hidden', 'info shown', 'error bad'], 'the inner logger still gets every call');
    assert.deepEqual(
      ring.recent().map((line) => line.level),
      ['info', 'error'],
      'the ring keeps only lines at or above the level',
    );
  });

  test('the level is the inner logger\'s: setting it through the tap applies to both', () => {
    const inner = new MemoryLogger();
    inner.level = 'warn';
    const ring = new LogRing(10);
    const logger = tapLogger(inner, ring);
    logger.info('before');
    logger.level = 'debug';
    assert.equal(inner.level, 'debug');
    logger.debug('after');
    assert.deepEqual(
      ring.recent().map((line) => line.text.split(' ').at(-1)),
      ['after'],
    );
  });
});

describe('createLogger', () => {
  test('maps the reference level names and closes without transports', async () => {
    const logger = createLogger({ level: 'WARNING', filePath: null, maxFileSize: 1 << 20, backupCount: 0, console: false });
    assert.equal(logger.level, 'warn');
    logger.level = 'debug';
    assert.equal(logger.level, 'debug');
    await logger.close();
  });
});
