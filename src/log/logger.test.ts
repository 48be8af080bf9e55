import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger, type LogFormat } from './logger.ts';

async function written(t: { after: (fn: () => Promise<void>) => void }, format: LogFormat): Promise<string[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'logger-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'node.log');
  const logger = createLogger({ level: 'INFO', filePath: file, maxFileSize: 1 << 20, backupCount: 0, console: false, format });
  logger.info('access 127.0.0.1 meeting 7 200 10 bytes 0.001 s complete', { event: 'download', client: '127.0.0.1', meeting_id: '7', status: 200, bytes: 10 });
  logger.warn('plain warning');
  logger.debug('below the threshold');
  await logger.close();
  return (await readFile(file, 'utf8')).trim().split('\n');
}

test('logging.format json writes one JSON object per line, with the line\'s fields as keys', async (t) => {
  const lines = await written(t, 'json');
  assert.equal(lines.length, 2);
  const [access, warning] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(access?.level, 'info');
  assert.equal(access?.message, 'access 127.0.0.1 meeting 7 200 10 bytes 0.001 s complete');
  assert.equal(access?.client, '127.0.0.1');
  assert.equal(access?.status, 200);
  assert.equal(access?.bytes, 10);
  assert.ok(!Number.isNaN(Date.parse(String(access?.time))), 'a timestamp');
  assert.deepEqual({ level: warning?.level, message: warning?.message }, { level: 'warn', message: 'plain warning' });
});

test('logging.format text (the default) writes readable lines without the fields', async (t) => {
  const lines = await written(t, 'text');
  assert.equal(lines.length, 2);
  assert.match(lines[0] ?? '', /^\S+ INFO  access 127\.0\.0\.1 meeting 7 200 10 bytes 0\.001 s complete$/);
  assert.match(lines[1] ?? '', /^\S+ WARN  plain warning$/);
});

test('a line logged after the logger closed never crashes the process (a late download ending at stop)', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'logger-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const logger = createLogger({ level: 'INFO', filePath: path.join(dir, 'node.log'), maxFileSize: 1 << 20, backupCount: 0, console: false });
  await logger.close();
  let uncaught: unknown = null;
  const onUncaught = (error: unknown) => (uncaught = error);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));
  logger.info('late info');
  logger.error('late error');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(uncaught, null);
});
