// The panel's site parts (issue 12 "Visible", issue 14 "A site view") in a real headless Chromium:
// two nodes of one site and the reference master on loopback, plus a listed sibling that does not
// answer. A meeting row says where its package came from; the site card lists the nodes, marks
// this node and the sibling held out after its failure; peers.static is edited as a list.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { EdgeNodeOptions } from '../../src/edge-node.ts';
import { pickSeed } from '../../src/site/rendezvous.ts';
import { ADMIN_TOKEN } from '../admin-helpers.ts';
import { cleanupStack, masterSha, nodeStatus, REPO_ROOT, removeDir, startMaster, startNode, waitFor, type TestNode } from '../helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'];
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');
const SITE: EdgeNodeOptions['site'] = { notFoundRetryMs: 3_000, busyRetryMs: 8_000, buildAskTimeoutMs: 5_000, membersMaxAgeMs: 0 };

async function launch(t: TestContext): Promise<Browser> {
  // A missing browser is a failure, not a skip (as in panel.test.ts).
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium fonts-noto-cjk)`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  t.after(() => browser.close());
  return browser;
}

function watchConsole(page: Page): string[] {
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    // The rejected config answers 400: expected.
    if (message.type() === 'error' && !/Failed to load resource: the server responded with a status of 400/.test(message.text())) problems.push(`console: ${message.text()}`);
  });
  return problems;
}

async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
}

/** A loopback port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A meeting id whose seed is `seed` among `members` and, without the unreachable one, `seedWithout`. */
function idSeededBy(seed: string, members: string[], prefix: string, seedWithout = seed, unreachable = ''): string {
  for (let i = 0; i < 10_000; i++) {
    const id = `${prefix}-${i}`;
    if (pickSeed(id, members) === seed && pickSeed(id, members.filter((m) => m !== unreachable)) === seedWithout) return id;
  }
  throw new Error('no such id');
}

async function signIn(page: Page, node: TestNode): Promise<void> {
  await page.goto(`${node.url}/`);
  await page.fill('#tokenInput', ADMIN_TOKEN);
  await page.click('#loginButton');
  await page.locator('#appView').waitFor({ state: 'visible' });
}

type SiteStatus = { fallbacks: number; held_out: Array<{ address: string }>; fetched_bytes: { master: number; peer: number } };

test('panel site view, English and Chinese, at 1280 and 390 px: "from node-x" rows, the site card with both nodes, this node and a held-out sibling marked, peers.static as a list', { timeout: 180_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const browser = await launch(t);
  const m = await startMaster({ packageRateBytesPerSec: 4_000_000 });
  cleanup(() => m.close());
  const dead = `127.0.0.1:${await closedPort()}`;
  const a = await startNode(m.port, { config: { adminToken: ADMIN_TOKEN }, node: { site: SITE } });
  cleanup(async () => {
    await a.stop();
    await removeDir(a.dir);
  });
  // b also knows a static sibling that does not answer: it falls back to the master and holds it out.
  const b = await startNode(m.port, { config: { adminToken: ADMIN_TOKEN, peers: { static: [dead] } }, node: { site: SITE } });
  cleanup(async () => {
    await b.stop();
    await removeDir(b.dir);
  });
  await waitFor('both nodes registered', () => m.master.nodes().filter((n) => n.online).length === 2);
  const aId = a.node.config.current.nodeId as string;
  const bId = b.node.config.current.nodeId as string;
  const members = [a.node.address, b.node.address, dead];
  const fromSeed = idSeededBy(a.node.address, members, 'hall');
  // a seeds it for a's own view of the site too: a fetches it from the master, b serves no sibling.
  const fromDead = idSeededBy(dead, members, 'room', a.node.address, dead);

  m.master.addMeeting({ id: fromSeed, title: 'Plenary 全体会议', packageSizeBytes: 600_000 });
  await m.master.startMeeting(fromSeed);
  await Promise.all([a.node.syncNow(), b.node.syncNow()]);
  const sha = masterSha(m.master, fromSeed);
  await waitFor('both nodes hold the package', () => a.node.store.get(fromSeed)?.sha256 === sha && b.node.store.get(fromSeed)?.sha256 === sha, 20_000);
  assert.deepEqual(b.node.jobs.jobs().find((j) => j.meetingId === fromSeed)?.source, { kind: 'peer', node: a.node.address }, 'b fetched it from a');

  m.master.addMeeting({ id: fromDead, title: 'Committee 委员会', packageSizeBytes: 200_000 });
  await m.master.startMeeting(fromDead);
  await waitFor('b holds the package its unreachable seed could not give', async () => {
    await b.node.syncNow();
    return b.node.sync.isServable(fromDead);
  }, 20_000, 200);
  // The master's list carries each node's meetings once it has heard a heartbeat listing them.
  await Promise.all([a.node.heartbeatNow(), b.node.heartbeatNow()]);
  await Promise.all([a.node.site.members.refresh(), b.node.site.members.refresh()]);
  const bSite = (await nodeStatus(b.node)).site as SiteStatus;
  assert.ok(bSite.fallbacks >= 1, 'b fell back to the master');
  assert.deepEqual(bSite.held_out.map((h) => h.address), [dead], 'and holds the failed sibling out');
  assert.ok(bSite.fetched_bytes.peer > 0);

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'Asia/Shanghai' });
  const page = await context.newPage();
  const problems = watchConsole(page);

  // --- b: its row says where the package came from ---------------------------------------------
  await signIn(page, b);
  const seedRow = page.locator(`tr[data-meeting-id="${fromSeed}"]`);
  const source = seedRow.locator('[data-testid="meeting-source"]');
  await source.waitFor();
  assert.equal(await source.textContent(), `from ${aId}`);
  assert.equal(await source.getAttribute('title'), a.node.address);
  assert.equal(await page.locator(`tr[data-meeting-id="${fromDead}"] [data-testid="meeting-source"]`).textContent(), 'from the master', 'the fallback fetched from the master');

  // --- b: the site card --------------------------------------------------------------------------
  const card = page.locator('[data-testid="site-card"]');
  await card.waitFor({ state: 'visible' });
  await card.locator('[data-testid="site-state"][data-state="on"]').waitFor();
  const rowA = card.locator(`tr[data-address="${a.node.address}"]`);
  const rowB = card.locator(`tr[data-address="${b.node.address}"]`);
  const rowDead = card.locator(`tr[data-address="${dead}"]`);
  await rowA.waitFor();
  assert.equal(await card.locator('tbody tr').count(), 3, 'both nodes and the held-out sibling');
  assert.match(String(await rowB.textContent()), new RegExp(bId));
  assert.equal(await rowB.getAttribute('data-self'), 'true');
  assert.equal(await rowB.locator('[data-testid="site-self"]').textContent(), 'this node');
  assert.equal(await rowA.locator('[data-testid="site-self"]').count(), 0);
  assert.match(String(await rowA.textContent()), new RegExp(aId));
  assert.match(String(await rowA.locator('[data-testid="site-seeds"]').textContent()), new RegExp(fromSeed), 'a seeds the meeting b fetched from it');
  assert.doesNotMatch(String(await rowB.locator('[data-testid="site-seeds"]').textContent()), new RegExp(fromSeed));
  assert.match(String(await rowB.locator('td').nth(3).textContent()), new RegExp(fromSeed), 'meetings held, from the master\'s list');
  assert.match(String(await rowA.locator('td').nth(2).textContent()), /^(just now|\d+ s ago) \(\d\d:\d\d:\d\d UTC\+08:00\)$/, 'last seen: relative and local time with zone');
  assert.equal(await rowDead.getAttribute('data-held-out'), 'true');
  assert.match(String(await rowDead.locator('[data-testid="site-held-out"]').textContent()), /^held out after a failure until \d\d:\d\d:\d\d UTC\+08:00$/);
  assert.match(String(await card.locator('[data-testid="site-fetched"]').textContent()), /^[\d.,]+ (B|KiB) from the master · [\d.,]+ KiB from nodes$/);
  assert.match(String(await card.locator('[data-testid="site-served"]').textContent()), /^0 B to tablets · 0 B to nodes$/);
  const fallbacks = card.locator('[data-testid="site-fallbacks"]');
  assert.equal(await fallbacks.getAttribute('data-count'), String(bSite.fallbacks));
  assert.match(String(await fallbacks.textContent()), new RegExp(`^${bSite.fallbacks} · last: ${dead.replaceAll('.', '\\.')} \\(connect ECONNREFUSED .+\\) · (just now|\\d+ s ago) \\(\\d\\d:\\d\\d:\\d\\d UTC\\+08:00\\)$`));
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 1280 px');

  // --- b: peers.static, a list typed one per line; a bad entry named beside the field -------------
  const list = page.locator('textarea[name="peers.static"]');
  assert.equal(await list.inputValue(), dead);
  await list.fill(`${dead}\nnode-b:http`);
  await page.click('[data-testid="config-save"]');
  const listError = page.locator('[data-error-for="peers.static"]');
  await listError.waitFor({ state: 'visible' });
  assert.equal(await listError.textContent(), '“node-b:http”: must be host:port');
  assert.equal(await list.getAttribute('aria-invalid'), 'true');
  assert.deepEqual(b.node.config.current.peers.static, [dead], 'nothing applied');
  await list.fill(`${dead}, ${dead}`);
  await page.click('[data-testid="config-save"]');
  await listError.filter({ hasText: 'lists the same entry twice' }).waitFor();
  assert.deepEqual(b.node.config.current.peers.static, [dead], 'nothing applied');

  // --- a, the seed: its row says it seeds, bytes to tablets vs to nodes -------------------------
  const pageA = await context.newPage();
  const problemsA = watchConsole(pageA);
  await signIn(pageA, a);
  const seedRowA = pageA.locator(`tr[data-meeting-id="${fromSeed}"]`);
  await seedRowA.locator('[data-testid="meeting-source"]', { hasText: 'from the master' }).waitFor();
  assert.equal(await seedRowA.locator('[data-testid="meeting-seed-here"]').textContent(), 'seed: siblings fetch it from this node');
  assert.match(String(await seedRowA.locator('[data-testid="served-split"]').textContent()), /^0 B to tablets · [\d.,]+ KiB to nodes$/);
  assert.match(String(await pageA.locator('[data-testid="site-served"]').textContent()), /^0 B to tablets · [\d.,]+ KiB to nodes$/);
  await pageA.locator(`[data-testid="site-card"] tr[data-address="${a.node.address}"] [data-testid="site-self"]`).waitFor();
  assert.equal(await pageA.locator('[data-testid="site-card"] tbody tr').count(), 2, 'a does not know b\'s static sibling');
  await pageA.close();

  // --- b in Chinese, at 390 px --------------------------------------------------------------------
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 390 px in English');
  await page.selectOption('[data-testid="lang-select"]', 'zh-CN');
  await page.locator('#siteHeading', { hasText: '站点' }).waitFor();
  assert.equal(await source.textContent(), `来自 ${aId}`);
  assert.equal(await page.locator(`tr[data-meeting-id="${fromDead}"] [data-testid="meeting-source"]`).textContent(), '来自主控服务器');
  assert.match(String(await card.locator('[data-testid="site-state"]').textContent()), /^站点分发已开启 · 2 个节点$/);
  assert.equal(await rowB.locator('[data-testid="site-self"]').textContent(), '本节点');
  assert.match(String(await rowDead.locator('[data-testid="site-held-out"]').textContent()), /^出错后暂停使用，至 \d\d:\d\d:\d\d UTC\+08:00$/);
  assert.match(String(await card.locator('[data-testid="site-fetched"]').textContent()), /^来自主控服务器 .+ · 来自节点 [\d.,]+ KiB$/);
  assert.match(String(await fallbacks.textContent()), new RegExp(`^${bSite.fallbacks} 次 · 最近：${dead.replaceAll('.', '\\.')}（连接被拒绝）`), 'the reason translated');
  assert.equal(await listError.textContent(), '有重复的项', 'the list error in Chinese too');
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 390 px in Chinese');
  await mkdir(ARTIFACTS, { recursive: true });
  // The meeting rows and the site card, one below the other.
  const clip = await page.evaluate<{ y: number; height: number }>(`(() => {
    const top = document.querySelector('section[aria-labelledby="meetingsHeading"]').getBoundingClientRect().top + window.scrollY;
    const bottom = document.getElementById('siteCard').getBoundingClientRect().bottom + window.scrollY;
    return { y: top, height: bottom - top };
  })()`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'panel-site-390-zh.png'), fullPage: true, clip: { x: 0, width: 390, ...clip } });

  // --- the list round-trips: saved as a JSON array, shown back one per line -----------------------
  await page.selectOption('[data-testid="lang-select"]', 'en');
  await page.setViewportSize({ width: 1280, height: 900 });
  const ipv6 = `[::1]:${dead.split(':')[1]}`;
  await list.fill(`${dead}\n\n  ${ipv6}  \n`);
  await page.click('[data-testid="config-save"]');
  await page.locator('.toast', { hasText: 'Configuration saved and applied.' }).waitFor();
  assert.deepEqual(b.node.config.current.peers.static, [dead, ipv6]);
  assert.ok(await listError.isHidden());
  assert.equal(await list.inputValue(), `${dead}\n${ipv6}`);
  await list.fill('');
  await page.click('[data-testid="config-save"]');
  await waitFor('the list emptied', () => b.node.config.current.peers.static.length === 0);
  assert.equal(await list.inputValue(), '');

  // --- the tier turned off from the form: the card says so -----------------------------------------
  await page.locator('[name="peers.enabled"]').uncheck();
  await page.click('[data-testid="config-save"]');
  await card.locator('[data-testid="site-state"][data-state="off"]', { hasText: 'Site tier off' }).waitFor();
  assert.equal(b.node.config.current.peers.enabled, false);
  assert.equal(await rowA.locator('[data-testid="site-seeds"]').textContent(), 'tier off');
  assert.equal(await page.locator('[data-testid="meeting-seed-here"]').count(), 0);

  assert.deepEqual([...problems, ...problemsA], [], 'no script errors or CSP violations');
  await context.close();
});
