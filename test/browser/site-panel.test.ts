// The panel's site parts (issue 12 "Visible", issue 14 "A site view", issue 18 "Show it") in a
// real headless Chromium: two nodes of one site (keyed alike) and the reference master on loopback,
// plus a listed sibling that does not answer and one that answers without the site key. A meeting
// row says where its package came from; the site card lists the nodes with their health and key
// proof, marks this node; peers.static is edited as a list; the site key is write-only.
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
import { createServer as createHttpServer } from 'node:http';
import { cleanupStack, masterSha, nodeStatus, REPO_ROOT, removeDir, settleSite, startMaster, startNode, TEST_SITE_KEY, waitFor, type TestNode } from '../helpers.ts';

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

type SiteStatus = { fallbacks: number; fetched_bytes: { master: number; peer: number }; nodes: Array<{ address: string; health: { state: string } }> };

/** A host that answers the health probe without the site key (a stranger in the master's registry). */
async function stranger(t: TestContext): Promise<string> {
  const server = createHttpServer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, proof: null })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

test('panel site view, English and Chinese, at 1280 and 390 px: "from node-x" rows, the site card with both nodes, their health and key proof, a silent sibling and a stranger marked, peers.static as a list, the key write-only', { timeout: 180_000 }, async (t) => {
  const cleanup = cleanupStack(t);
  const browser = await launch(t);
  const m = await startMaster({ packageRateBytesPerSec: 4_000_000 });
  cleanup(() => m.close());
  const dead = `127.0.0.1:${await closedPort()}`;
  const rogue = await stranger(t);
  const a = await startNode(m.port, { config: { adminToken: ADMIN_TOKEN, peers: { key: TEST_SITE_KEY } }, node: { site: SITE } });
  cleanup(async () => {
    await a.stop();
    await removeDir(a.dir);
  });
  // b also knows a static sibling that does not answer and one without the key: neither is ever a seed.
  const b = await startNode(m.port, { config: { adminToken: ADMIN_TOKEN, peers: { static: [dead, rogue], key: TEST_SITE_KEY } }, node: { site: SITE } });
  cleanup(async () => {
    await b.stop();
    await removeDir(b.dir);
  });
  await waitFor('both nodes registered', () => m.master.nodes().filter((n) => n.online).length === 2);
  await settleSite([a, b]);
  const aId = a.node.config.current.nodeId as string;
  const bId = b.node.config.current.nodeId as string;
  const members = [a.node.address, b.node.address];
  const fromSeed = idSeededBy(a.node.address, members, 'hall');
  // The silent sibling would win this meeting if it counted: b takes it from a all the same.
  const fromDead = idSeededBy(dead, [...members, dead], 'room', a.node.address, dead);

  m.master.addMeeting({ id: fromSeed, title: 'Plenary 全体会议', packageSizeBytes: 600_000 });
  await m.master.startMeeting(fromSeed);
  await Promise.all([a.node.syncNow(), b.node.syncNow()]);
  const sha = masterSha(m.master, fromSeed);
  await waitFor('both nodes hold the package', () => a.node.store.get(fromSeed)?.sha256 === sha && b.node.store.get(fromSeed)?.sha256 === sha, 20_000);
  assert.deepEqual(b.node.jobs.jobs().find((j) => j.meetingId === fromSeed)?.source, { kind: 'peer', node: a.node.address }, 'b fetched it from a');

  m.master.addMeeting({ id: fromDead, title: 'Committee 委员会', packageSizeBytes: 200_000 });
  await m.master.startMeeting(fromDead);
  await waitFor('b holds the package the silent sibling would have seeded', async () => {
    await Promise.all([a.node.syncNow(), b.node.syncNow()]);
    return b.node.sync.isServable(fromDead);
  }, 20_000, 200);
  // The master's list carries each node's meetings once it has heard a heartbeat listing them.
  await Promise.all([a.node.heartbeatNow(), b.node.heartbeatNow()]);
  await Promise.all([a.node.site.members.refresh(), b.node.site.members.refresh()]);
  const bSite = (await nodeStatus(b.node)).site as SiteStatus;
  assert.equal(bSite.fallbacks, 0, 'b never asked the silent sibling nor the stranger');
  const stateOf = (address: string) => bSite.nodes.find((n) => n.address === address)?.health.state;
  assert.deepEqual([stateOf(a.node.address), stateOf(b.node.address), stateOf(dead), stateOf(rogue)], ['healthy', 'self', 'sick', 'not-of-site']);
  assert.ok(bSite.fetched_bytes.peer > 0);
  assert.ok(!JSON.stringify(await nodeStatus(b.node)).includes(TEST_SITE_KEY), 'the key is not in the status');

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
  assert.equal(await page.locator(`tr[data-meeting-id="${fromDead}"] [data-testid="meeting-source"]`).textContent(), `from ${aId}`, 'the silent sibling is no seed');

  // --- b: the site card --------------------------------------------------------------------------
  const card = page.locator('[data-testid="site-card"]');
  await card.waitFor({ state: 'visible' });
  await card.locator('[data-testid="site-state"][data-state="on"]').waitFor();
  const rowA = card.locator(`tr[data-address="${a.node.address}"]`);
  const rowB = card.locator(`tr[data-address="${b.node.address}"]`);
  const rowDead = card.locator(`tr[data-address="${dead}"]`);
  const rowRogue = card.locator(`tr[data-address="${rogue}"]`);
  await rowA.waitFor();
  assert.equal(await card.locator('tbody tr').count(), 4, 'both nodes, the silent sibling and the stranger');
  assert.match(String(await rowB.textContent()), new RegExp(bId));
  assert.equal(await rowB.getAttribute('data-self'), 'true');
  assert.equal(await rowB.locator('[data-testid="site-self"]').textContent(), 'this node');
  assert.equal(await rowA.locator('[data-testid="site-self"]').count(), 0);
  assert.match(String(await rowA.textContent()), new RegExp(aId));
  assert.match(String(await rowA.locator('[data-testid="site-seeds"]').textContent()), new RegExp(fromSeed), 'a seeds the meeting b fetched from it');
  assert.doesNotMatch(String(await rowB.locator('[data-testid="site-seeds"]').textContent()), new RegExp(fromSeed));
  assert.match(String(await rowB.locator('td').nth(4).textContent()), new RegExp(fromSeed), 'meetings held, from the master\'s list');
  assert.match(String(await rowA.locator('td').nth(3).textContent()), /^(just now|\d+ s ago) \(\d\d:\d\d:\d\d UTC\+08:00\)$/, 'last seen: relative and local time with zone');
  assert.equal(await rowA.locator('[data-testid="site-health"]').textContent(), 'healthy · key proven');
  assert.equal(await rowB.locator('[data-testid="site-health"]').textContent(), 'this node');
  assert.equal(await rowDead.locator('[data-testid="site-health"]').textContent(), 'not answering');
  assert.equal(await rowRogue.locator('[data-testid="site-health"]').textContent(), 'not of this site (cannot prove the site key)');
  assert.equal(await card.locator('[data-testid="site-security"]').textContent(), '0');
  assert.match(String(await card.locator('[data-testid="site-fetched"]').textContent()), /^[\d.,]+ (B|KiB) from the master · [\d.,]+ KiB from nodes$/);
  assert.match(String(await card.locator('[data-testid="site-served"]').textContent()), /^0 B to tablets · 0 B to nodes$/);
  const fallbacks = card.locator('[data-testid="site-fallbacks"]');
  assert.equal(await fallbacks.getAttribute('data-count'), '0');
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 1280 px');

  // --- b: peers.static, a list typed one per line; a bad entry named beside the field -------------
  const list = page.locator('textarea[name="peers.static"]');
  assert.equal(await list.inputValue(), `${dead}\n${rogue}`);
  // The key is write-only: an empty field saying a key is set, never the key.
  const keyInput = page.locator('input[name="peers.key"]');
  assert.equal(await keyInput.inputValue(), '');
  assert.equal(await keyInput.getAttribute('type'), 'password');
  assert.equal(await keyInput.getAttribute('placeholder'), 'unchanged');
  assert.ok(!(await page.content()).includes(TEST_SITE_KEY), 'the key is nowhere in the page');
  await list.fill(`${dead}\nnode-b:http`);
  await page.click('[data-testid="config-save"]');
  const listError = page.locator('[data-error-for="peers.static"]');
  await listError.waitFor({ state: 'visible' });
  assert.equal(await listError.textContent(), '“node-b:http”: must be host:port');
  assert.equal(await list.getAttribute('aria-invalid'), 'true');
  assert.deepEqual(b.node.config.current.peers.static, [dead, rogue], 'nothing applied');
  await list.fill(`${dead}, ${dead}`);
  await page.click('[data-testid="config-save"]');
  await listError.filter({ hasText: 'lists the same entry twice' }).waitFor();
  assert.deepEqual(b.node.config.current.peers.static, [dead, rogue], 'nothing applied');

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
  assert.equal(await pageA.locator('[data-testid="site-card"] tbody tr').count(), 2, 'a does not know b\'s static siblings');
  await pageA.close();

  // --- b in Chinese, at 390 px --------------------------------------------------------------------
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok((await horizontalOverflow(page)) <= 0, 'no horizontal scroll at 390 px in English');
  await page.selectOption('[data-testid="lang-select"]', 'zh-CN');
  await page.locator('#siteHeading', { hasText: '站点' }).waitFor();
  assert.equal(await source.textContent(), `来自 ${aId}`);
  assert.equal(await page.locator(`tr[data-meeting-id="${fromDead}"] [data-testid="meeting-source"]`).textContent(), `来自 ${aId}`);
  assert.match(String(await card.locator('[data-testid="site-state"]').textContent()), /^站点分发已开启 · 2 个节点$/);
  assert.equal(await rowB.locator('[data-testid="site-self"]').textContent(), '本节点');
  assert.equal(await rowDead.locator('[data-testid="site-health"]').textContent(), '无响应');
  assert.equal(await rowRogue.locator('[data-testid="site-health"]').textContent(), '不属于本站点（无法证明站点密钥）');
  assert.match(String(await card.locator('[data-testid="site-fetched"]').textContent()), /^来自主控服务器 .+ · 来自节点 [\d.,]+ KiB$/);
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
  assert.equal(b.node.config.current.peers.key, TEST_SITE_KEY, 'saving other settings leaves the key alone');

  // --- the tier turned off from the form: the card says so -----------------------------------------
  await page.locator('[name="peers.enabled"]').uncheck();
  await page.click('[data-testid="config-save"]');
  await card.locator('[data-testid="site-state"][data-state="off"]', { hasText: 'Site tier off' }).waitFor();
  assert.equal(b.node.config.current.peers.key, TEST_SITE_KEY);
  assert.equal(b.node.config.current.peers.enabled, false);
  assert.equal(await rowA.locator('[data-testid="site-seeds"]').textContent(), 'tier off');
  assert.equal(await page.locator('[data-testid="meeting-seed-here"]').count(), 0);

  assert.deepEqual([...problems, ...problemsA], [], 'no script errors or CSP violations');
  await context.close();
});
