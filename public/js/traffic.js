// The traffic card (issue 19): what a meeting's start looks like, live. Bytes per second served to
// tablets, served to sibling nodes and fetched from the master over the last 15 minutes, and per
// meeting how many tablets hold its package. The node samples its counters every few seconds
// (GET /api/traffic for the history, a `traffic` event per new sample); uPlot draws them
// (served by the node under /static/vendor/uplot/, so the panel works offline).
import { byId, setText } from './dom.js';
import { formatRate } from './format.js';

const RATE_SERIES = [
  { key: 'served_tablets', label: 'traffic.servedTablets', stroke: '#1f6feb', fill: 'rgba(31, 111, 235, 0.08)' },
  { key: 'served_peers', label: 'traffic.servedPeers', stroke: '#1a7f37', fill: null },
  { key: 'fetched_master', label: 'traffic.fetchedMaster', stroke: '#d4700a', fill: null },
];
const HOLDER_COLORS = ['#7b3fe4', '#c62828', '#0b7a75', '#9a6700', '#1558c0', '#b4237a'];

export class TrafficChart {
  constructor(i18n) {
    this.i18n = i18n;
    this.samples = [];
    this.maxSamples = 180;
    this.titles = new Map();
    this.rates = null;
    this.holders = null;
    this.holderIds = [];
    this.width = 0;
    this.observer = typeof ResizeObserver === 'function' ? new ResizeObserver(() => this.resize()) : null;
    this.observer?.observe(byId('trafficCard'));
  }

  /** The history from GET /api/traffic (replaces what was shown). */
  load(history) {
    const interval = history?.interval_ms || 5000;
    this.maxSamples = Math.max(2, Math.round((15 * 60 * 1000) / interval));
    this.samples = (history?.samples ?? []).slice(-this.maxSamples);
    this.render();
  }

  /** One new sample from the event stream. */
  push(sample) {
    this.samples.push(sample);
    if (this.samples.length > this.maxSamples) this.samples.splice(0, this.samples.length - this.maxSamples);
    this.update();
  }

  /** Meeting titles for the holders' legend (from /api/status). */
  setTitles(meetings) {
    for (const meeting of meetings ?? []) if (meeting.title) this.titles.set(meeting.id, meeting.title);
  }

  /** Builds the charts anew (first load, language change). */
  render() {
    this.destroy();
    this.update();
  }

  destroy() {
    this.rates?.destroy();
    this.holders?.destroy();
    this.rates = null;
    this.holders = null;
    this.holderIds = [];
  }

  update() {
    const t = (key, vars) => this.i18n.t(key, vars);
    const lang = this.i18n.lang;
    const last = this.samples.at(-1);
    byId('trafficRates').setAttribute('aria-label', t('traffic.rates'));
    byId('trafficHolders').setAttribute('aria-label', t('traffic.holders'));
    setText(
      'trafficNow',
      last
        ? t('traffic.now', { tablets: formatRate(last.served_tablets, lang), peers: formatRate(last.served_peers, lang), master: formatRate(last.fetched_master, lang) })
        : t('traffic.waiting'),
    );
    const holderIds = [...new Set(this.samples.flatMap((sample) => Object.keys(sample.holders ?? {})))].sort();
    const holdersNow = byId('trafficHoldersNow');
    holdersNow.dataset.count = String(holderIds.length);
    holdersNow.textContent =
      holderIds.length === 0 ? t('traffic.holdersEmpty') : holderIds.map((id) => `${this.titleOf(id)}: ${last?.holders?.[id] ?? 0}`).join(' · ');

    const uPlot = window.uPlot;
    byId('trafficUnavailable').hidden = typeof uPlot === 'function';
    if (typeof uPlot !== 'function') return;
    const times = this.samples.map((sample) => sample.at / 1000);
    const rateData = [times, ...RATE_SERIES.map((series) => this.samples.map((sample) => sample[series.key] ?? 0))];
    if (this.rates) this.rates.setData(rateData);
    else this.rates = new uPlot(this.rateOptions(), rateData, byId('trafficRates'));

    const holderData = [times, ...holderIds.map((id) => this.samples.map((sample) => sample.holders?.[id] ?? null))];
    if (this.holders && holderIds.join('\n') === this.holderIds.join('\n')) {
      this.holders.setData(holderData);
    } else {
      this.holders?.destroy();
      this.holderIds = holderIds;
      this.holders = new uPlot(this.holderOptions(holderIds), holderData, byId('trafficHolders'));
    }
  }

  resize() {
    const width = this.chartWidth();
    if (width === this.width) return;
    this.width = width;
    this.rates?.setSize({ width, height: 180 });
    this.holders?.setSize({ width, height: 140 });
  }

  chartWidth() {
    return Math.max(240, byId('trafficRates').clientWidth || byId('trafficCard').clientWidth - 32);
  }

  titleOf(id) {
    return this.titles.get(id) ?? id;
  }

  rateOptions() {
    const t = (key) => this.i18n.t(key);
    const lang = this.i18n.lang;
    this.width = this.chartWidth();
    return {
      width: this.width,
      height: 180,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_, min, max) => [0, Math.max(1024, max * 1.1)] } },
      axes: [{ values: timeTicks(lang) }, { size: 90, values: (_, ticks) => ticks.map((value) => formatRate(value, lang)) }],
      series: [
        {},
        ...RATE_SERIES.map((series) => ({
          label: t(series.label),
          stroke: series.stroke,
          fill: series.fill ?? undefined,
          width: 2,
          value: (_, value) => (value === null || value === undefined ? '—' : formatRate(value, lang)),
        })),
      ],
    };
  }

  holderOptions(ids) {
    this.width = this.chartWidth();
    return {
      width: this.width,
      height: 140,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_, min, max) => [0, Math.max(5, Math.ceil(max * 1.1))] } },
      axes: [{ values: timeTicks(this.i18n.lang) }, { size: 48, values: (_, ticks) => ticks.map((value) => (Number.isInteger(value) ? String(value) : '')) }],
      series: [
        {},
        ...ids.map((id, index) => ({
          label: this.titleOf(id),
          stroke: HOLDER_COLORS[index % HOLDER_COLORS.length],
          width: 2,
          spanGaps: false,
          paths: window.uPlot.paths?.stepped?.({ align: 1 }),
        })),
      ],
    };
  }
}

/** Time axis labels in the panel's language and the browser's zone: HH:MM, with seconds when ticks are under a minute apart. */
function timeTicks(lang) {
  const minutes = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' });
  const seconds = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return (_, ticks) => {
    const format = ticks.length > 1 && ticks[1] - ticks[0] < 60 ? seconds : minutes;
    return ticks.map((tick) => format.format(tick * 1000));
  };
}
