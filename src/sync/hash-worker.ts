/**
 * The hash thread's own side (hash-thread.ts is the main thread's): the messages the two
 * exchange, and the worker's source. The worker reads back from the file what the writer reports
 * as written and hashes it, one read buffer for every file.
 */

/** The worker's read size (one buffer, reused for every file). */
export const READ_BYTES = 1024 * 1024;

/** `ack`: the worker answers `hashed` once it has read up to `end` (the scrub's pacing). */
export type ToWorker = { type: 'hash' | 'digest'; id: number; path: string; end: number; ack?: boolean } | { type: 'drop'; id: number };
export type FromWorker =
  | { type: 'digest'; id: number; hex: string }
  | { type: 'hashed'; id: number; end: number }
  | { type: 'error'; id: number; message: string; code: string };

// CommonJS source run with `eval`: no separate file to locate from src/ and from the bundle.
// A file is opened at its first message (the writer has created it by then: it reports bytes only
// after writing them) and closed at its digest or drop. After a failure the entry stays, closed,
// so messages already on their way do not reopen it, until its digest or the drop that follows.
export const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const buffer = Buffer.allocUnsafe(${READ_BYTES});
const files = new Map();
function close(file) {
  if (file.fd === null) return;
  try { closeSync(file.fd); } catch {}
  file.fd = null;
}
function hashTo(file, end) {
  if (file.fd === null) file.fd = openSync(file.path, 'r');
  while (file.offset < end) {
    const n = readSync(file.fd, buffer, 0, Math.min(buffer.length, end - file.offset), file.offset);
    if (n === 0) throw Object.assign(new Error(file.path + ' ends at ' + file.offset + ' bytes, ' + end + ' were written'), { code: 'SHORT' });
    file.hash.update(n === buffer.length ? buffer : buffer.subarray(0, n));
    file.offset += n;
  }
}
parentPort.on('message', (message) => {
  let file = files.get(message.id);
  if (message.type === 'drop') {
    if (file) close(file);
    files.delete(message.id);
    return;
  }
  if (!file) files.set(message.id, (file = { path: message.path, fd: null, offset: 0, hash: createHash('sha256'), failed: false }));
  if (file.failed) {
    if (message.type === 'digest') files.delete(message.id);
    return;
  }
  try {
    hashTo(file, message.end);
    if (message.type !== 'digest') {
      if (message.ack) parentPort.postMessage({ type: 'hashed', id: message.id, end: message.end });
      return;
    }
    close(file);
    files.delete(message.id);
    parentPort.postMessage({ type: 'digest', id: message.id, hex: file.hash.digest('hex') });
  } catch (error) {
    close(file);
    file.failed = true;
    if (message.type === 'digest') files.delete(message.id);
    parentPort.postMessage({ type: 'error', id: message.id, message: 'hashing ' + file.path + ': ' + error.message, code: String(error.code || 'ERROR') });
  }
});
`;
