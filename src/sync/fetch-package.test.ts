import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { descriptorsOn, waitFor } from '../../test/helpers.ts';
import { MasterClient } from '../master/master-client.ts';
import { fetchPackage, FetchError } from './fetch-package.ts';
import { HashThread } from './hash-thread.ts';

test('a download that fails after its body was written gives its hash up: the worker lets go of the temp file', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'fetch-package-'));
  t.after(() => fsp.rm(dir, { recursive: true, force: true }));
  // 3 MiB that are not a zip: the body ends properly, the zip check refuses it after the digest was asked for.
  const body = Buffer.alloc(3 * 1024 * 1024, 7);
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/zip' });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const master = new MasterClient({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, connectTimeoutMs: 2_000, requestTimeoutMs: 5_000 });
  const thread = new HashThread();
  t.after(() => thread.close());

  const tempPath = path.join(dir, 'package.zip.part-1');
  await assert.rejects(
    fetchPackage({ master, meetingId: 'm1', tempPath, idleTimeoutMs: 5_000, headersTimeoutMs: 5_000, signal: new AbortController().signal, hash: (file) => thread.create(file) }),
    (error: unknown) => error instanceof FetchError && error.code === 'NOT_A_ZIP',
  );
  assert.equal(thread.inProgress, 0, 'the hash is forgotten');
  // The caller deletes the temp file; the worker must not keep it (and its disk space) open.
  await fsp.rm(tempPath);
  await waitFor('the hash worker to let go of the deleted temp file', () => descriptorsOn(tempPath) === 0);
});
