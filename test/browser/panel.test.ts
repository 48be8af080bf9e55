// The control panel in a real headless Chromium (Debian's chromium driven by playwright-core),
// against a real node and the reference master. Screenshots go to test-artifacts/ (gitignored).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ADMIN_TOKEN, masterCount, startAdminNode } from '../admin-helpers.ts';
import { fetchRaw, packageUrl, REPO_ROOT, removeDir, startMaster, waitFor } from '../helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');

async function launch(t: TestContext): Promise<Browser> {
  // A missing browser is a failure, not a skip: CI installs it (.ci/run), and a skipped panel test proves nothing.
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium fonts-noto-cjk)`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  t.after(() => browser.close());
  return browser;
}

async function shot(page: Page, name: string, fullPage = false): Promise<void> {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage });
}

/** Problems the page reported itself: script errors, CSP violations, failed requests. */
function watchConsole(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    // The wrong-token sign-in and the rejected config are expected 401 and 400 answers.
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of 40[01]/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  return problems;
}

async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
}

test('control panel: sign in, live sync progress to 100 %, config errors and apply, stop/start, language, layouts', { timeout: 180_000 }, async (t) => {
  const browser = await launch(t);
  // Throttled so a sync lasts several seconds and the bar can be watched moving.
  const m = await startMaster({ throttleBytesPerSec: 250_000, chunkSize: 8192 });
  t.after(() => m.close());
  const n = await startAdminNode(m.port, { authLimit: { maxFailures: 100, windowMs: 60_000 } });
  t.after(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  m.master.addMeeting({ id: 'held1', title: 'Budget review 预算审查', packageSizeBytes: 120_000 });
  await m.master.startMeeting('held1');
  await n.node.syncNow();
  await waitFor('first package held', () => n.node.sync.isServable('held1'));

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  const problems = watchConsole(page);
  page.on('dialog', (dialog) => void dialog.accept());

  // --- sign in -------------------------------------------------------------------------------
  await page.goto(`${n.url}/`);
  await page.locator('#loginView').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#loginView h1').textContent(), 'Sign in to the control panel');
  await shot(page, 'panel-login.png');
  await page.fill('#tokenInput', 'not-the-token-000000000');
  await page.click('#loginButton');
  await page.locator('#loginError').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#loginError').textContent(), 'That token was not accepted.');
  assert.ok(await page.locator('#appView').isHidden());
  await page.fill('#tokenInput', ADMIN_TOKEN);
  await page.click('#loginButton');
  await page.locator('#appView').waitFor({ state: 'visible' });
  await page.locator('[data-testid="node-id"]', { hasText: n.node.config.current.nodeId ?? '' }).waitFor();
  assert.equal(await page.evaluate<string | null>("sessionStorage.getItem('meeting-edge.adminToken')"), ADMIN_TOKEN);
  assert.ok(!page.url().includes(ADMIN_TOKEN), 'the token is not in the URL');
  await page.locator('[data-testid="stream-state"][data-state="open"]').waitFor();
  await page.locator('tr[data-meeting-id="held1"] [data-testid="progress"][aria-valuenow="100"]').waitFor();
  // Kept for the browser session: a reload stays signed in.
  await page.reload();
  await page.locator('#appView').waitFor({ state: 'visible' });
  assert.ok(await page.locator('#loginView').isHidden());

  // --- a meeting syncs live: progress bar, then 100 % ------------------------------------------
  m.master.addMeeting({ id: 'live1', title: 'Plenary session 全体会议', packageSizeBytes: 1_500_000 });
  await m.master.startMeeting('live1');
  await page.click('[data-testid="sync-now"]');
  const liveRow = page.locator('tr[data-meeting-id="live1"]');
  await liveRow.locator('[data-testid="meeting-state"]', { hasText: 'Syncing' }).waitFor({ timeout: 15_000 });
  const bar = liveRow.locator('[data-testid="progress"]');
  // Size unknown while fetching (no Content-Length from the master): bytes and rate, no percentage.
  await liveRow.locator('.progress-text', { hasText: /KiB received · .+\/s/ }).waitFor({ timeout: 15_000 });
  const firstText = await bar.getAttribute('aria-valuetext');
  assert.equal(await bar.getAttribute('aria-valuenow'), null);
  assert.match(await bar.getAttribute('class') ?? '', /indeterminate/);
  await shot(page, 'panel-syncing.png');
  await waitFor('the received bytes to grow', async () => (await bar.getAttribute('aria-valuetext')) !== firstText, 15_000, 100);
  await liveRow.locator('[data-testid="progress"][aria-valuenow="100"]').waitFor({ timeout: 30_000 });
  await liveRow.locator('[data-testid="meeting-state"]', { hasText: 'Synced' }).waitFor();
  assert.ok(n.node.sync.isServable('live1'));
  await shot(page, 'panel-synced.png');

  // --- config: a bad value shows its error next to the field; fixed, it is applied -------------
  const retry = page.locator('[name="network.retryCount"]');
  await retry.fill('11');
  await page.click('[data-testid="config-save"]');
  const retryError = page.locator('[data-error-for="network.retryCount"]');
  await retryError.waitFor({ state: 'visible' });
  assert.equal(await retryError.textContent(), 'must be ≤ 10');
  assert.equal(await retry.getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#configError').isVisible(), true);
  assert.equal(n.node.config.current.network.retryCount, 3, 'nothing applied');
  await retryError.scrollIntoViewIfNeeded();
  await shot(page, 'panel-config-error.png');
  await retry.fill('5');
  await page.fill('[name="heartbeat.interval"]', '20');
  await page.click('[data-testid="config-save"]');
  await page.locator('.toast', { hasText: 'Configuration saved and applied.' }).waitFor();
  assert.ok(await retryError.isHidden());
  assert.equal(n.node.config.current.network.retryCount, 5);
  assert.equal(n.node.config.current.heartbeat.interval, 20);
  assert.equal(await retry.inputValue(), '5');
  assert.equal(await page.locator('[name="heartbeat.interval"]').inputValue(), '20');

  // --- stop and start the service ------------------------------------------------------------
  const unregisters = masterCount(m.master, 'unregister');
  await page.click('[data-testid="service-toggle"]');
  await page.locator('[data-testid="service-state"][data-state="stopped"]').waitFor();
  assert.equal(masterCount(m.master, 'unregister'), unregisters + 1);
  assert.equal((await fetchRaw(packageUrl(n.url, 'live1'))).status, 503);
  assert.ok(await page.locator('[data-testid="sync-now"]').isDisabled());
  await shot(page, 'panel-stopped.png');
  const registers = masterCount(m.master, 'register');
  await page.click('[data-testid="service-toggle"]');
  await page.locator('[data-testid="service-state"][data-state="running"]').waitFor();
  assert.equal(masterCount(m.master, 'register'), registers + 1);
  assert.equal((await fetchRaw(packageUrl(n.url, 'live1'))).status, 200);
  await page.locator('[data-testid="master-state"][data-state="ok"]').waitFor();

  // --- log and diagnostics -------------------------------------------------------------------
  await page.locator('[data-testid="log-view"]', { hasText: 'service started by the operator' }).waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="diagnostics"]')]);
  assert.match(download.suggestedFilename(), /^meeting-edge-diagnostics-node-.+\.zip$/);

  // --- language: switch to Chinese, remembered across reloads --------------------------------
  await page.selectOption('[data-testid="lang-select"]', 'zh-CN');
  await page.locator('#meetingsHeading', { hasText: '会议' }).waitFor();
  assert.equal(await page.evaluate<string>('document.documentElement.lang'), 'zh-CN');
  assert.equal(await page.locator('[data-testid="service-state"]').textContent(), '运行中');
  // (After the restart the node may refetch on a token change: wait for it to settle.)
  await liveRow.locator('[data-testid="meeting-state"]', { hasText: '已同步' }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator('[data-testid="config-save"]').textContent(), '保存并应用');
  await shot(page, 'panel-zh.png');
  await page.fill('[name="syncInterval"]', '5');
  await page.click('[data-testid="config-save"]');
  await page.locator('[data-error-for="syncInterval"]', { hasText: '不能小于 10' }).waitFor();
  await page.click('#configReset');
  await page.reload();
  await page.locator('#meetingsHeading', { hasText: '会议' }).waitFor();
  await page.selectOption('[data-testid="lang-select"]', 'en');
  await page.locator('#meetingsHeading', { hasText: 'Meetings' }).waitFor();

  // --- layouts: a 1024 px laptop and a tablet, without sideways scrolling -------------------
  await page.setViewportSize({ width: 1024, height: 768 });
  await page.locator('#appView').waitFor();
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 1024 px');
  await shot(page, 'panel-1024.png', true);
  await page.setViewportSize({ width: 768, height: 1024 });
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll on a portrait tablet');
  await shot(page, 'panel-tablet.png', true);

  // --- sign out ------------------------------------------------------------------------------
  await page.click('#logoutButton');
  await page.locator('#loginView').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate<string | null>("sessionStorage.getItem('meeting-edge.adminToken')"), null);

  assert.deepEqual(problems, [], 'no script errors or CSP violations in the page');
  await context.close();
});

test('control panel: Chinese is chosen from the browser language', { timeout: 60_000 }, async (t) => {
  const browser = await launch(t);
  const m = await startMaster();
  t.after(() => m.close());
  const n = await startAdminNode(m.port);
  t.after(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 }, locale: 'zh-CN' });
  const page = await context.newPage();
  const problems = watchConsole(page);
  await page.goto(`${n.url}/static/index.html`);
  await page.locator('#loginView h1', { hasText: '登录控制面板' }).waitFor();
  assert.equal(await page.evaluate<string>('document.documentElement.lang'), 'zh-CN');
  await page.fill('#tokenInput', ADMIN_TOKEN);
  await page.click('#loginButton');
  await page.locator('[data-testid="service-state"]', { hasText: '运行中' }).waitFor();
  assert.equal(await page.locator('[data-testid="lang-select"]').inputValue(), 'zh-CN');
  await shot(page, 'panel-zh-1024.png', true);
  assert.deepEqual(problems, []);
  await context.close();
});

/** A log line's UTC timestamp as the panel must show it in Asia/Shanghai (UTC+8, no DST). */
function shanghaiTime(isoUtc: string): string {
  const shifted = new Date(Date.parse(isoUtc) + 8 * 3_600_000).toISOString();
  return `${shifted.slice(0, 10)} ${shifted.slice(11, 23)} UTC+08:00`;
}

test('control panel at 390 px, English and Chinese: re-sync percent and time left, master unreachable told as it is, sizes in GiB/MiB, errors translated, log times local with zone', { timeout: 180_000 }, async (t) => {
  const browser = await launch(t);
  // Throttled so a re-sync lasts a few seconds.
  const m = await startMaster({ throttleBytesPerSec: 300_000, chunkSize: 8192 });
  let masterUp = true;
  t.after(() => (masterUp ? m.close() : undefined));
  const n = await startAdminNode(m.port, { authLimit: { maxFailures: 100, windowMs: 60_000 } });
  t.after(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  m.master.addMeeting({ id: 'r1', title: 'Board meeting 董事会', packageSizeBytes: 1_200_000 });
  await m.master.startMeeting('r1');

  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'en-US', timezoneId: 'Asia/Shanghai', isMobile: true, hasTouch: true });
  const page = await context.newPage();
  const problems = watchConsole(page);
  await page.goto(`${n.url}/`);
  await page.fill('#tokenInput', ADMIN_TOKEN);
  await page.click('#loginButton');
  await page.locator('#appView').waitFor({ state: 'visible' });
  await n.node.syncNow();
  await waitFor('r1 held', () => n.node.sync.isServable('r1'), 30_000);
  const row = page.locator('tr[data-meeting-id="r1"]');
  await row.locator('[data-testid="meeting-state"]', { hasText: 'Synced' }).waitFor({ timeout: 15_000 });

  // --- a re-sync (the meeting restarted between two polls: its token change shows a new build) ----
  await waitFor('the master\'s token change', () => m.master.stats().tokenChanges >= 1, 20_000);
  await n.node.syncNow();
  // No quick check between polls, so the node sees the restart only as the next token change.
  await n.node.updateConfig({ watchInterval: 0 });
  const changes = m.master.stats().tokenChanges;
  await m.master.endMeeting('r1');
  await m.master.startMeeting('r1');
  await waitFor('the restart\'s token change', () => m.master.stats().tokenChanges > changes, 20_000);
  void n.node.syncNow();
  await row.locator('[data-testid="serving-previous"]', { hasText: 'The previous package is still served meanwhile.' }).waitFor({ timeout: 15_000 });
  const resyncText = row.locator('.progress-text', { hasText: /^≈ \d+(\.\d)?% · .+ of ~.+ \(previous size\) · .+\/s · ~\d+ s left/ });
  await resyncText.waitFor({ timeout: 10_000 });
  const resyncBar = row.locator('[data-testid="progress"]');
  assert.match(String(await resyncBar.getAttribute('aria-valuenow')), /^\d+$/, 'a re-sync has a percentage');
  assert.doesNotMatch(String(await resyncBar.getAttribute('class')), /indeterminate/);
  assert.equal((await fetchRaw(packageUrl(n.url, 'r1'))).status, 200, 'and the held package is indeed served meanwhile');
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 390 px (re-sync)');
  await row.scrollIntoViewIfNeeded();
  await shot(page, 'panel-390-resync.png');
  await page.selectOption('[data-testid="lang-select"]', 'zh-CN');
  await row.locator('[data-testid="serving-previous"]', { hasText: '同步期间仍在提供上一版会议包。' }).waitFor({ timeout: 10_000 }).catch(async () => {
    // The re-sync may end while switching: then it is synced again, which the next line checks.
  });
  await row.locator('[data-testid="meeting-state"]', { hasText: '已同步' }).waitFor({ timeout: 30_000 });
  await page.selectOption('[data-testid="lang-select"]', 'en');

  // --- sizes typed in GiB/MiB; the node still gets bytes ---------------------------------------
  const quota = page.locator('[name="storage.maxSize"]');
  assert.equal(await quota.inputValue(), '10');
  assert.equal(await page.locator('[data-unit-for="storage.maxSize"]').inputValue(), 'GiB');
  assert.equal(await page.locator('[name="logging.maxFileSize"]').inputValue(), '10');
  assert.equal(await page.locator('[data-unit-for="logging.maxFileSize"]').inputValue(), 'MiB');
  await quota.fill('2.5');
  await page.locator('[data-unit-for="logging.maxFileSize"]').selectOption('KiB');
  await page.fill('[name="logging.maxFileSize"]', '512');
  await page.click('[data-testid="config-save"]');
  await page.locator('.toast', { hasText: /Saved|saved/ }).first().waitFor();
  assert.equal(n.node.config.current.storage.maxSize, 2.5 * 1024 ** 3);
  assert.equal(n.node.config.current.logging.maxFileSize, 512 * 1024);
  assert.equal(await quota.inputValue(), '2560', 'shown back in the largest whole unit');
  assert.equal(await page.locator('[data-unit-for="storage.maxSize"]').inputValue(), 'MiB');
  await page.locator('#storageText', { hasText: /of 2\.50 GiB quota/ }).waitFor();

  // --- log times: local time with the zone, UTC on hover ---------------------------------------
  await page.click('#logsRefresh');
  const firstLine = page.locator('.log-line').first();
  await firstLine.waitFor();
  const utc = String(await firstLine.getAttribute('title'));
  assert.match(utc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(String(await firstLine.textContent()).startsWith(shanghaiTime(utc)), `${await firstLine.textContent()} starts with ${shanghaiTime(utc)}`);

  // --- the master goes away: the Service card says so, the last successful heartbeat stays -----
  await m.close();
  masterUp = false;
  assert.equal(await n.node.heartbeatNow(), false);
  assert.equal(await n.node.heartbeatNow(), false);
  await n.node.syncNow().catch(() => {});
  await page.reload();
  const hint = page.locator('#serviceHint[data-state="master-down"]');
  await hint.waitFor({ timeout: 15_000 });
  assert.match(String(await hint.textContent()), /^Master unreachable since \d\d:\d\d:\d\d \(UTC\+08:00\) \(\d+ failed in a row\); serving the packages held here to tablets\.$/);
  assert.doesNotMatch(String(await hint.textContent()), /Registered with the master/);
  const heartbeat = page.locator('#masterLastHeartbeat');
  assert.ok(Number(await heartbeat.getAttribute('data-failures')) >= 2, 'the failures are counted');
  assert.match(String(await heartbeat.textContent()), / · \d+ failed since$/);
  await page.locator('[data-testid="master-state"][data-state="bad"]').waitFor();
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 390 px (master down)');
  await shot(page, 'panel-390-master-down.png');
  t.diagnostic(`master error shown: ${await page.locator('#masterError').textContent()}`);

  // --- the same in Chinese, with the node's English errors translated --------------------------
  await page.selectOption('[data-testid="lang-select"]', 'zh-CN');
  await page.locator('#serviceHint[data-state="master-down"]', { hasText: /^主控服务器自 \d\d:\d\d:\d\d \(UTC\+08:00\) 起无法连接（连续失败 \d+ 次）/ }).waitFor();
  await page.locator('#masterLastHeartbeat', { hasText: /此后失败 \d+ 次$/ }).waitFor();
  const masterError = String(await page.locator('#masterError').textContent());
  assert.doesNotMatch(masterError, /ECONNREFUSED|fetch failed|heartbeat:/, `translated: ${masterError}`);
  assert.match(masterError, /失败：连接被拒绝/);
  await page.fill('[name="mainServerIp"]', '127.0.0.1:80');
  await page.click('[data-testid="config-save"]');
  await page.locator('[data-error-for="mainServerIp"]', { hasText: '必须是主机名、IPv4 或 IPv6 地址（不含端口、协议、路径或空格）' }).waitFor();
  assert.equal(n.node.config.current.mainServerIp, '127.0.0.1', 'nothing applied');
  await page.click('#configReset');
  const zhLine = page.locator('.log-line').first();
  assert.ok(String(await zhLine.textContent()).startsWith(shanghaiTime(String(await zhLine.getAttribute('title')))), 'log times local in Chinese too');
  assert.equal(await page.locator('[data-unit-for="storage.maxSize"]').inputValue(), 'MiB');
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 390 px in Chinese');
  await shot(page, 'panel-390-zh.png', true);

  assert.deepEqual(problems, [], 'no script errors in the page');
  await context.close();
});

test('control panel: an upcoming meeting shows its time with the zone and "ready for the start"; a port set by --port says so under the field', { timeout: 120_000 }, async (t) => {
  const browser = await launch(t);
  const m = await startMaster();
  t.after(() => m.close());
  m.master.addMeeting({ id: 'soon1', title: 'Quarterly plan 季度计划', time: Date.now() + 3_600_000, packageSizeBytes: 150_000 });
  const n = await startAdminNode(m.port, { config: { preheat: { enabled: true } }, portSource: '--port' });
  t.after(async () => {
    await n.stop();
    await removeDir(n.dir);
  });
  await waitFor('soon1 preheated', () => n.node.store.get('soon1')?.source === 'preheat', 15_000);

  for (const [locale, zoneLabel, ready, overridden] of [
    ['en-US', /\(UTC[+-]\d\d:\d\d\)$/, 'Ready', 'Set by --port when the node started'],
    ['zh-CN', /\(UTC[+-]\d\d:\d\d\)$/, '就绪', '节点启动时由 --port 指定'],
  ] as const) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale, timezoneId: 'Asia/Shanghai' });
    const page = await context.newPage();
    const problems = watchConsole(page);
    await page.goto(`${n.url}/static/index.html`);
    await page.fill('#tokenInput', ADMIN_TOKEN);
    await page.click('#loginButton');
    const row = page.locator('#upcomingBody tr[data-meeting-id="soon1"]');
    await row.waitFor();
    const time = String(await row.locator('td').nth(1).textContent());
    assert.match(time, zoneLabel, `${locale}: the scheduled time carries its zone (${time})`);
    assert.match(time, /\(UTC\+08:00\)$/, 'in the browser\'s zone');
    assert.match(String(await row.locator('[data-testid="preheat-state"]').textContent()), new RegExp(ready));
    const hint = page.locator('[data-field="nodePort"] .field-hint');
    await hint.waitFor();
    assert.match(String(await hint.textContent()), new RegExp(overridden));
    await shot(page, `panel-upcoming-${locale}.png`);
    assert.deepEqual(problems, []);
    await context.close();
  }
});
