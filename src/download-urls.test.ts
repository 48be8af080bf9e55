import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DOWNLOAD_ROUTES, downloadPathId, isDownloadPath } from './download-urls.ts';

test('both download URLs give their meeting id, percent-decoded, with or without a query', () => {
  assert.equal(downloadPathId('/api/v1/meetings/m1/download-package'), 'm1');
  assert.equal(downloadPathId('/api/meetings/m1/download'), 'm1');
  assert.equal(downloadPathId('/api/v1/meetings/m%2D1/download-package?x=1'), 'm-1');
  assert.equal(downloadPathId('/api/meetings/%zz/download'), '%zz', 'undecodable ids are passed on for the route to refuse');
});

test('other URLs are not download URLs', () => {
  for (const url of [
    '/api/v1/meetings/m1/download-package/',
    '/api/v1/meetings/m1/download-packagex',
    '/api/v1/meetings//download-package',
    '/api/v1/meetings/a/b/download-package',
    '/api/meetings/m1/download-package',
    '/api/v1/meetings/m1/download',
    '/api/status',
    'http://host/api/meetings/m1/download',
  ]) {
    assert.equal(downloadPathId(url), null, url);
    assert.equal(isDownloadPath(url), false, url);
  }
});

test('the public-path check and the raw matcher agree on every declared route', () => {
  assert.equal(DOWNLOAD_ROUTES.length, 2);
  for (const route of DOWNLOAD_ROUTES) {
    const path = route.replace(':id', 'm1');
    assert.equal(isDownloadPath(path), true, path);
    assert.equal(downloadPathId(path), 'm1', path);
  }
});
