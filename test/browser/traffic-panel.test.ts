// The panel's traffic card (issue 19) in a real headless Chromium: bytes per second to tablets and
// from the master, tablets holding a package, drawn by uPlot served by the node itself (offline),
// at 1280 px and 390 px, in English and Chinese.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import { chromium, type Page } from 'playwright-core';
import { ADMIN_TOKEN } from '../admin-helpers.ts';
import { fetchRaw, packageUrl, REPO_ROOT, removeDir, startMaster, startNode, waitFor } from '../helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');

/** A tablet's download from its own loopback address (127.0.0.x): the holders are counted per address. */
function tabletDownload(url: string, localAddress: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { localAddress, headers }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => resolve(bytes));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function overflow(page: Page): Promise<number> {
  return page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
}

test('traffic card: live bytes per second and tablets holding each package, uPlot served by the node, 390 px, en and zh', { timeout: 120_000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium fonts-noto-cjk)`);
  const m = await startMaster({ throttleBytesPerSec: 2_000_000 });
  t.after(() => m.close());
  m.master.addMeeting({ id: 'tr1', title: 'Opening 开幕式', packageSizeBytes: 1_000_000 });
  await m.master.startMeeting('tr1');
  const n = await startNode(m.port, { config: { adminToken: ADMIN_TOKEN }, node: { policy: { trafficSampleMs: 250 } } });
  t.after(async () => {
    await n.stop();
    await removeDir(n.dir);
  });

  // The chart library comes from the node (offline): the files of the npm package.
  const script = await fetchRaw(`${n.url}/static/vendor/uplot/uPlot.iife.min.js`);
  assert.equal(script.status, 200);
  assert.match(String(script.headers['content-type']), /javascript/);
  assert.match(script.body.toString('utf8', 0, 4000), /uPlot/);
  assert.equal((await fetchRaw(`${n.url}/static/vendor/uplot/uPlot.min.css`)).status, 200);
  assert.equal((await fetchRaw(`${n.url}/static/vendor/uplot/../../../package.json`)).status, 404, 'nothing outside the folder');

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  await page.goto(`${n.url}/static/index.html`);
  await page.fill('#tokenInput', ADMIN_TOKEN);
  await page.click('#loginButton');
  await page.locator('[data-testid="stream-state"][data-state="open"]').waitFor();
  const card = page.locator('[data-testid="traffic-card"]');
  await card.locator('canvas').first().waitFor();
  assert.equal(await card.locator('[data-testid="traffic-rates"] canvas').count(), 1, 'uPlot drew the rates chart');
  assert.ok(await page.locator('#trafficUnavailable').isHidden());
  await page.locator('[data-testid="traffic-holders-now"]', { hasText: 'No tablet has downloaded a package yet.' }).waitFor();

  // The meeting starts: the node fetches from the master while three tablets download.
  const tablets = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
  const sizes = await Promise.all([
    tabletDownload(packageUrl(n.url, 'tr1'), tablets[0]!),
    tabletDownload(packageUrl(n.url, 'tr1'), tablets[1]!),
    // A resumed download (an open-ended range) holds the package too, once the file is whole.
    waitFor('tr1 held', () => n.node.sync.isServable('tr1'), 30_000).then(() => tabletDownload(packageUrl(n.url, 'tr1'), tablets[2]!, { range: 'bytes=1000-' })),
  ]);
  const size = n.node.store.get('tr1')?.size ?? 0;
  assert.deepEqual(sizes, [size, size, size - 1000]);
  // A piece of the package is no holder.
  await tabletDownload(packageUrl(n.url, 'tr1'), '127.0.0.5', { range: 'bytes=0-99' });

  await page.locator('[data-testid="traffic-holders-now"]', { hasText: 'Opening 开幕式: 3' }).waitFor({ timeout: 10_000 });
  await waitFor('the chart has drawn the holders', async () => (await card.locator('[data-testid="traffic-holders"] canvas').count()) === 1);
  assert.equal((await fetchRaw(`${n.url}/api/traffic`)).status, 401, 'the history needs the admin token');
  const history = (await (await fetch(`${n.url}/api/traffic`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
    interval_ms: number;
    samples: Array<{ served_tablets: number; fetched_master: number; holders: Record<string, number> }>;
  };
  assert.equal(history.interval_ms, 250);
  assert.ok(history.samples.some((s) => s.fetched_master > 0), 'bytes from the master per second were sampled');
  assert.ok(history.samples.some((s) => s.served_tablets > 0), 'bytes to tablets per second were sampled');
  assert.equal(history.samples.at(-1)?.holders.tr1, 3);
  // The panel's own figures are the API's (the legend of the rates chart names the three series).
  const legend = String(await card.locator('[data-testid="traffic-rates"] .u-legend').textContent());
  for (const label of ['To tablets', 'To nodes', 'From the master']) assert.ok(legend.includes(label), legend);
  await page.locator('[data-testid="traffic-now"]', { hasText: /^Now: .+\/s to tablets · .+\/s to nodes · .+\/s from the master$/ }).waitFor();
  await mkdir(ARTIFACTS, { recursive: true });
  await card.screenshot({ path: path.join(ARTIFACTS, 'panel-traffic.png') });

  // 390 px and Chinese: the charts take the phone's width, nothing scrolls sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.selectOption('[data-testid="lang-select"]', 'zh-CN');
  await page.locator('#trafficHeading', { hasText: '流量（最近 15 分钟）' }).waitFor();
  await page.locator('[data-testid="traffic-now"]', { hasText: /^当前：平板 / }).waitFor();
  await waitFor('the legend in Chinese', async () => String(await card.locator('[data-testid="traffic-rates"] .u-legend').textContent()).includes('发送给平板'));
  await waitFor('the charts resized to the phone', async () => {
    const width = await card.locator('[data-testid="traffic-rates"] canvas').evaluate((canvas) => canvas.getBoundingClientRect().width);
    const cardWidth = await card.evaluate((element) => element.clientWidth);
    return width <= cardWidth && width > 200;
  });
  assert.ok((await overflow(page)) <= 0, 'no horizontal scroll at 390 px');
  await card.scrollIntoViewIfNeeded();
  await card.screenshot({ path: path.join(ARTIFACTS, 'panel-traffic-390-zh.png') });
  assert.deepEqual(problems, [], 'no script errors or CSP violations');
  await context.close();
});
