// The site card (issue 12's site tier, issue 14's site view): the nodes sharing this node's master
// as the master lists them, who seeds which meeting, where the bytes came from and went.
import { byId, h, setText } from './dom.js';
import { formatAgo, formatBytes, formatLocalTime } from './format.js';

/** A sibling's name as the operator knows it (its node id), its address when the master does not list it. */
export function nodeName(site, address) {
  return site?.nodes?.find((node) => node.address === address)?.node_id ?? address;
}

/** Where a meeting's package came from ("from node-x" / "from the master"); null before any download. */
export function sourceOf(meeting, site, t) {
  const source = meeting.source;
  if (!source) return null;
  if (source.kind === 'peer') return { kind: 'peer', text: t('meetings.fromNode', { node: nodeName(site, source.node) }), title: source.node };
  return { kind: 'master', text: t('meetings.fromMaster'), title: null };
}

export function renderSite(status, i18n) {
  const site = status.site;
  byId('siteCard').hidden = !site;
  if (!site) return;
  const t = (key, vars) => i18n.t(key, vars);
  const lang = i18n.lang;
  const heldOut = new Map((site.held_out ?? []).map((entry) => [entry.address, entry.until]));
  const nodes = [...(site.nodes ?? [])];
  // A sibling left out after a failure is no member: the master may not list it either.
  for (const address of heldOut.keys()) {
    if (!nodes.some((node) => node.address === address)) nodes.push({ node_id: null, address, self: false, last_seen: null, meetings: [], seeds: [] });
  }
  nodes.sort((a, b) => Number(b.self) - Number(a.self) || String(a.node_id ?? a.address).localeCompare(String(b.node_id ?? b.address)));

  const pill = byId('sitePill');
  // The members that share packages: this node and the siblings that proved the key and answer.
  const onlineCount = nodes.filter((node) => !heldOut.has(node.address) && (node.self || node.health?.state === 'healthy')).length;
  const noKey = !site.enabled && site.off === 'no-key';
  pill.textContent = noKey ? t('site.offNoKey') : !site.enabled ? t('site.off') : onlineCount > 1 ? t('site.on', { count: onlineCount }) : t('site.onAlone');
  pill.className = `pill ${site.enabled ? 'pill-ok' : 'pill-off'}`;
  pill.dataset.state = site.enabled ? 'on' : noKey ? 'no-key' : 'off';
  // Off without a key: one line saying so and how to turn the tier on.
  setText('siteHint', site.enabled ? t('site.onHint') : noKey ? t('site.offNoKeyHint') : t('site.offHint'));
  const security = byId('siteSecurity');
  const lastSecurity = site.last_security_event;
  security.dataset.count = String(site.security_events ?? 0);
  security.classList.toggle('error-text', (site.security_events ?? 0) > 0);
  security.replaceChildren(
    lastSecurity ? t('site.securityLast', { count: site.security_events ?? 0, node: lastSecurity.node, reason: i18n.serverMessage(lastSecurity.reason) }) : String(site.security_events ?? 0),
    lastSecurity ? ' · ' : '',
    lastSecurity ? agoWithTime(lastSecurity.at, t) : '',
  );
  setText('siteHandovers', String(site.handovers ?? 0));

  const fetched = site.fetched_bytes ?? { master: 0, peer: 0 };
  const served = site.served_bytes ?? { tablet: 0, peer: 0 };
  setText('siteFetched', t('site.fetchedValue', { master: formatBytes(fetched.master, lang), peer: formatBytes(fetched.peer, lang) }));
  setText('siteServed', t('site.servedValue', { tablet: formatBytes(served.tablet, lang), peer: formatBytes(served.peer, lang) }));
  const last = site.last_fallback;
  const fallbacks = byId('siteFallbacks');
  fallbacks.dataset.count = String(site.fallbacks ?? 0);
  fallbacks.replaceChildren(
    last
      ? t('site.fallbacksLast', { count: site.fallbacks ?? 0, node: nodeName(site, last.node), reason: i18n.serverMessage(withoutSeed(last.reason)) })
      : String(site.fallbacks ?? 0),
    last ? ' · ' : '',
    last ? agoWithTime(last.at, t) : '',
  );
  const listed = byId('siteListed');
  listed.replaceChildren(
    site.listed_at ? agoWithTime(site.listed_at, t) : t('time.never'),
    site.list_error ? h('span', { className: 'error-text' }, ` · ${t('site.listError', { error: i18n.serverMessage(site.list_error) })}`) : '',
  );

  const labels = {
    node: t('site.col.node'),
    address: t('site.col.address'),
    health: t('site.col.health'),
    lastSeen: t('site.col.lastSeen'),
    meetings: t('site.col.meetings'),
    seeds: t('site.col.seeds'),
  };
  const rows = nodes.map((node) => {
    const until = heldOut.get(node.address);
    return h(
      'tr',
      { dataset: { address: node.address, self: String(Boolean(node.self)), heldOut: String(until !== undefined) } },
      h(
        'td',
        { dataset: { label: labels.node } },
        h(
          'div',
          { className: 'site-node-name' },
          h('span', { className: 'mono' }, node.node_id ?? '—'),
          node.self ? h('span', { className: 'tag tag-self', dataset: { testid: 'site-self' } }, t('site.self')) : null,
          until !== undefined ? h('span', { className: 'tag tag-held', dataset: { testid: 'site-held-out' } }, t('site.heldOut', { until: formatLocalTime(until) })) : null,
        ),
      ),
      h('td', { dataset: { label: labels.address } }, h('span', { className: 'mono' }, node.address)),
      h('td', { dataset: { label: labels.health, testid: 'site-health', state: node.health?.state ?? 'unknown' } }, healthText(node.health, site, t)),
      h('td', { dataset: { label: labels.lastSeen } }, node.last_seen ? agoWithTime(node.last_seen, t) : '—'),
      h('td', { dataset: { label: labels.meetings } }, idList(node.meetings)),
      h('td', { dataset: { label: labels.seeds, testid: 'site-seeds' } }, site.enabled ? idList(node.seeds) : t('site.tierOff')),
    );
  });
  byId('siteNodesBody').replaceChildren(...rows);
  byId('siteNodesEmpty').hidden = rows.length > 0;
}

/** "12 s ago (16:14:27 UTC+08:00)": the relative part kept current by refreshAgo(). */
function agoWithTime(at, t) {
  return h('span', { className: 'ago', dataset: { at }, title: new Date(at).toISOString() }, `${formatAgo(at, t)} (${formatLocalTime(at)})`);
}

/** Keeps the relative times of the card current between status fetches. */
export function refreshSiteClock(t) {
  for (const element of byId('siteCard').querySelectorAll('.ago[data-at]')) {
    element.textContent = `${formatAgo(element.dataset.at, t)} (${formatLocalTime(element.dataset.at)})`;
  }
}

/** The node's reasons start with "seed <address>": the card names the node already. */
function withoutSeed(reason) {
  return String(reason).replace(/^seed \S+?(?::\s|\s)/, '');
}

/** A member's health and key proof as the node probed them (the key itself is never shown). */
function healthText(health, site, t) {
  if (!site.enabled) return t('site.tierOff');
  const state = health?.state ?? 'unknown';
  const text = t(`site.health.${state}`);
  if (state === 'sick' && health.last_error) return h('span', { className: 'error-text', title: health.last_error }, text);
  if (state === 'not-of-site') return h('span', { className: 'error-text' }, text);
  return text;
}

function idList(ids) {
  if (!ids || ids.length === 0) return h('span', { className: 'muted' }, '—');
  return h('span', { className: 'id-list mono' }, ids.join(', '));
}
