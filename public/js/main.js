// The control panel: sign-in, overview, live meetings, configuration, logs.
import { Api, ApiError } from './api.js';
import { ConfigForm } from './config-form.js';
import { byId, h, setText } from './dom.js';
import { formatAgo, formatBytes, formatClockTime, formatDateTimeZone, formatLogTime, formatPercent, formatUptime } from './format.js';
import { I18n } from './i18n.js';
import { renderMeetings } from './meetings.js';
import { refreshSiteClock, renderSite } from './site.js';
import { TrafficChart } from './traffic.js';
import { renderUpcoming } from './upcoming.js';

const MAX_LOG_LINES = 500;

class Panel {
  constructor() {
    this.api = new Api();
    this.i18n = new I18n();
    this.form = new ConfigForm(byId('configFields'), this.i18n);
    this.traffic = new TrafficChart(this.i18n);
    this.status = null;
    this.statusFetchedAt = 0;
    this.stream = null;
    this.timers = [];
    this.refreshTimer = null;
    this.logLines = [];
    this.busy = new Set();
  }

  async start() {
    await this.i18n.init();
    byId('langSelect').value = this.i18n.lang;
    byId('langSelect').addEventListener('change', (event) => this.i18n.use(event.target.value));
    this.i18n.onChange(() => {
      byId('langSelect').value = this.i18n.lang;
      this.form.rerender();
      this.render();
      this.traffic.render();
      this.renderStreamState(this.streamState);
    });
    this.api.onUnauthorized = () => this.signOut(this.i18n.t('login.expired'));
    byId('loginForm').addEventListener('submit', (event) => {
      event.preventDefault();
      void this.signIn(byId('tokenInput').value.trim());
    });
    byId('logoutButton').addEventListener('click', () => this.signOut());
    byId('serviceButton').addEventListener('click', () => void this.toggleService());
    byId('syncButton').addEventListener('click', () => void this.syncNow());
    byId('configForm').addEventListener('submit', (event) => {
      event.preventDefault();
      void this.saveConfig();
    });
    byId('configReset').addEventListener('click', () => {
      this.form.setConfig(this.form.config, { force: true });
      this.form.showErrors({});
      byId('configError').hidden = true;
    });
    byId('logsRefresh').addEventListener('click', () => void this.loadLogs());
    byId('diagnosticsButton').addEventListener('click', () => void this.downloadDiagnostics());

    if (this.api.token) {
      const ok = await this.enter().then(() => true, () => false);
      if (ok) return;
    }
    this.showLogin();
  }

  showLogin(message = '') {
    byId('appView').hidden = true;
    byId('loginView').hidden = false;
    byId('logoutButton').hidden = true;
    byId('streamState').hidden = true;
    setText('topNodeId', '');
    const error = byId('loginError');
    error.textContent = message;
    error.hidden = !message;
    byId('tokenInput').focus();
  }

  async signIn(token) {
    const error = byId('loginError');
    if (!token) {
      error.textContent = this.i18n.t('login.empty');
      error.hidden = false;
      return;
    }
    const button = byId('loginButton');
    button.disabled = true;
    button.textContent = this.i18n.t('login.checking');
    this.api.setToken(token);
    try {
      await this.enter();
      byId('tokenInput').value = '';
    } catch (failure) {
      this.api.setToken(null);
      const message =
        failure instanceof ApiError && failure.status === 401
          ? this.i18n.t('login.wrong')
          : failure instanceof ApiError && failure.status === 429
            ? this.i18n.t('login.limited', { seconds: failure.retryAfter ?? 60 })
            : this.i18n.t('login.unreachable', { error: failure.message });
      this.showLogin(message);
    } finally {
      button.disabled = false;
      button.textContent = this.i18n.t('login.submit');
    }
  }

  signOut(message = '') {
    this.api.setToken(null);
    this.stream?.abort();
    this.stream = null;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.status = null;
    this.showLogin(message);
  }

  /** Loads everything with the current token; throws (401 included) if the node refuses. */
  async enter() {
    // The 401 of a wrong token is handled by signIn, not as an expired session.
    const onUnauthorized = this.api.onUnauthorized;
    this.api.onUnauthorized = () => {};
    // allSettled: every request has answered before the expired-session handler is back.
    const results = await Promise.allSettled([this.api.get('/api/status'), this.api.get('/api/config/schema'), this.api.get('/api/config')]);
    this.api.onUnauthorized = onUnauthorized;
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    const [status, schema, config] = results.map((result) => result.value);
    this.setStatus(status);
    this.form.setSchema(schema);
    this.form.setConfig(config, { force: true });
    byId('loginView').hidden = true;
    byId('appView').hidden = false;
    byId('logoutButton').hidden = false;
    byId('streamState').hidden = false;
    void this.loadLogs();
    this.openStream();
    this.timers.push(setInterval(() => void this.refreshStatus(), 10_000));
    this.timers.push(setInterval(() => this.renderClock(), 1_000));
  }

  openStream() {
    this.stream?.abort();
    const controller = new AbortController();
    this.stream = controller;
    void this.api.streamEvents(
      (event, data) => this.onEvent(event, data),
      (state) => this.renderStreamState(state),
      controller.signal,
    );
  }

  onEvent(event, data) {
    const meetings = this.status?.meetings ?? [];
    const find = (id) => meetings.find((m) => m.id === id);
    switch (event) {
      case 'hello':
        for (const progress of data.syncing ?? []) this.applyProgress(find(progress.id), progress);
        this.scheduleRefresh(0);
        // A reconnected stream missed the samples in between: the history again.
        void this.loadTraffic();
        break;
      case 'progress':
        for (const progress of data.meetings ?? []) {
          const meeting = find(progress.id);
          if (meeting) this.applyProgress(meeting, progress);
          else this.scheduleRefresh();
        }
        this.renderMeetings();
        break;
      case 'sync': {
        // The meeting's state is the server's (status.ts): fetched now rather than guessed here.
        const meeting = find(data.id);
        if (meeting && data.phase === 'started') meeting.progress = { bytes: 0, total: null, rate: 0, attempt: data.attempt };
        else if (meeting && data.phase === 'succeeded') meeting.progress = null;
        this.renderMeetings();
        this.scheduleRefresh(0);
        break;
      }
      case 'log':
        this.appendLog(data.lines ?? []);
        break;
      case 'traffic':
        this.traffic.push(data);
        break;
      case 'service':
        if (this.status) this.status.running = data.running;
        this.render();
        this.scheduleRefresh();
        break;
      case 'config':
        this.scheduleRefresh();
        void this.reloadConfig();
        break;
      default:
        this.scheduleRefresh();
    }
  }

  applyProgress(meeting, progress) {
    if (!meeting) return;
    meeting.progress = { ...(meeting.progress ?? {}), ...progress };
  }

  /** Coalesces many events into one status fetch. */
  scheduleRefresh(delayMs = 300) {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.refreshStatus();
    }, delayMs);
  }

  async refreshStatus() {
    if (!this.api.token) return;
    try {
      this.setStatus(await this.api.get('/api/status'));
    } catch (error) {
      if (error.status !== 401) this.renderStreamState('closed');
    }
  }

  setStatus(status) {
    this.status = status;
    this.traffic.setTitles(status.meetings);
    this.statusFetchedAt = Date.now();
    this.render();
  }

  async reloadConfig() {
    try {
      this.form.setConfig(await this.api.get('/api/config'));
    } catch {
      // The next change or sign-in brings it.
    }
  }

  render() {
    const s = this.status;
    if (!s) return;
    const t = (key, vars) => this.i18n.t(key, vars);
    const lang = this.i18n.lang;
    setText('topNodeId', s.node_id ?? '');
    setText('nodeId', s.node_id ?? '—');
    setText('nodeAddress', s.node_address ?? `${s.node_ip}:${s.node_port}`);
    setText('nodeVersion', s.version ?? '—');
    this.renderClock();

    this.form.setOverrides(s.start_overrides);
    const restart = s.restart_required ?? [];
    byId('restartNotice').hidden = restart.length === 0;
    setText('restartNotice', restart.length ? t('node.restart', { keys: restart.join(', ') }) : '');

    const running = s.running;
    const servicePill = byId('servicePill');
    servicePill.textContent = running ? t('service.running') : t('service.stopped');
    servicePill.className = `pill ${running ? 'pill-ok' : 'pill-off'}`;
    servicePill.dataset.state = running ? 'running' : 'stopped';
    const master = s.master ?? {};
    // What the card says must match what the master card shows: never "registered" while it fails.
    const hintState = !running ? 'stopped' : master.reachable ? (master.registered ? 'serving' : 'not-registered') : master.last_error ? 'master-down' : 'connecting';
    const serviceHint = byId('serviceHint');
    serviceHint.dataset.state = hintState;
    serviceHint.textContent = {
      stopped: () => t('service.stoppedHint'),
      serving: () => t('service.runningHint'),
      'not-registered': () => t('service.notRegisteredHint'),
      'master-down': () => t('service.masterDownHint', { since: formatClockTime(master.failing_since ?? master.last_error.at), failures: Math.max(1, master.consecutive_failures ?? 0) }),
      connecting: () => t('service.connectingHint'),
    }[hintState]();
    const serviceButton = byId('serviceButton');
    serviceButton.textContent = running ? t('service.stop') : t('service.start');
    serviceButton.className = `btn ${running ? 'btn-danger' : 'btn-primary'}`;
    serviceButton.disabled = this.busy.has('service');
    byId('syncButton').disabled = !running || this.busy.has('sync');

    const masterPill = byId('masterPill');
    const masterState = !running ? 'off' : master.reachable ? 'ok' : master.last_error ? 'bad' : 'pending';
    masterPill.textContent =
      masterState === 'ok'
        ? `${t('master.connected')} · ${master.registered ? t('master.registered') : t('master.notRegistered')}`
        : masterState === 'bad'
          ? t('master.unreachable')
          : masterState === 'off'
            ? `${t('service.stopped')} · ${t('master.notRegistered')}`
            : t('master.pending');
    masterPill.className = `pill ${{ ok: 'pill-ok', bad: 'pill-bad', off: 'pill-off', pending: 'pill-warn' }[masterState]}`;
    masterPill.dataset.state = masterState;
    setText('masterUrl', master.url ?? s.main_server ?? '—');
    const masterError = byId('masterError');
    masterError.hidden = !master.last_error;
    masterError.textContent = master.last_error ? `${this.i18n.serverMessage(master.last_error.message)} (${formatAgo(master.last_error.at, t)})` : '';

    const storage = s.storage ?? {};
    const used = storage.used ?? s.storage_usage ?? 0;
    const quota = storage.max ?? 0;
    const fraction = quota > 0 ? used / quota : storage.disk_total ? used / storage.disk_total : 0;
    const gauge = byId('storageGauge');
    gauge.setAttribute('aria-valuenow', String(Math.round(Math.min(1, fraction) * 100)));
    byId('storageGaugeFill').style.width = `${Math.min(100, fraction * 100).toFixed(1)}%`;
    const threshold = storage.cleanup_threshold ?? 0.9;
    gauge.classList.toggle('gauge-high', quota > 0 && fraction >= threshold);
    const mark = byId('storageGaugeMark');
    mark.hidden = !(quota > 0);
    mark.style.left = `${(threshold * 100).toFixed(1)}%`;
    mark.title = formatPercent(threshold, lang);
    setText(
      'storageText',
      quota > 0
        ? t('storage.usedOfQuota', { used: formatBytes(used, lang), quota: formatBytes(quota, lang), percent: formatPercent(Math.min(fraction, 9.99), lang) })
        : t('storage.usedNoQuota', { used: formatBytes(used, lang) }),
    );
    setText('storagePackages', String(storage.packages ?? s.meeting_count ?? 0));
    setText('storageDiskFree', storage.disk_free === null || storage.disk_free === undefined ? t('storage.unknown') : formatBytes(storage.disk_free, lang));
    setText('storageScrub', scrubText(s.maintenance?.scrub, t, lang));

    this.renderMeetings();
    renderSite(s, this.i18n);
  }

  renderMeetings() {
    const s = this.status;
    if (!s) return;
    const meetings = s.meetings ?? [];
    renderMeetings(byId('meetingsBody'), meetings, this.i18n, s.site);
    byId('meetingsEmpty').hidden = meetings.length > 0;
    const upcoming = s.upcoming ?? [];
    renderUpcoming(byId('upcomingBody'), upcoming, this.i18n);
    byId('upcomingEmpty').hidden = upcoming.length > 0;
  }

  /** Values that move with time (uptime, "12 s ago") without a new status fetch. */
  renderClock() {
    const s = this.status;
    if (!s) return;
    const t = (key, vars) => this.i18n.t(key, vars);
    const elapsed = (Date.now() - this.statusFetchedAt) / 1000;
    setText('nodeUptime', formatUptime((s.uptime_seconds ?? 0) + elapsed, t));
    const master = s.master ?? {};
    setText('masterLastPoll', formatAgo(master.last_poll, t));
    // The last beat the master answered, not the last one sent (a failing beat is not "just now").
    const lastOk = formatAgo(master.last_heartbeat_success ?? (master.last_heartbeat_ok ? master.last_heartbeat : null), t);
    const failures = master.consecutive_failures ?? 0;
    const heartbeat = byId('masterLastHeartbeat');
    heartbeat.textContent = failures > 0 ? t('master.heartbeatFailing', { when: lastOk, failures }) : lastOk;
    heartbeat.dataset.failures = String(failures);
    setText('meetingsSummary', t('meetings.summary', { active: s.active_meeting_count ?? 0, when: formatAgo(master.last_poll, t) }));
    refreshSiteClock(t);
  }

  renderStreamState(state) {
    this.streamState = state;
    const element = byId('streamState');
    if (!state) return;
    element.textContent = state === 'open' ? this.i18n.t('stream.live') : this.i18n.t('stream.reconnecting');
    element.className = `stream-state ${state === 'open' ? 'stream-live' : 'stream-down'}`;
    element.dataset.state = state;
  }

  async toggleService() {
    if (!this.status || this.busy.has('service')) return;
    const stopping = this.status.running;
    if (stopping && !window.confirm(this.i18n.t('service.confirmStop'))) return;
    this.busy.add('service');
    this.render();
    try {
      const result = await this.api.post(stopping ? '/api/service/stop' : '/api/service/start');
      this.status.running = result.running;
      this.toast(this.i18n.t(result.running ? 'service.startedToast' : 'service.stoppedToast'), 'ok');
    } catch (error) {
      this.toastError(error);
    } finally {
      this.busy.delete('service');
      await this.refreshStatus();
    }
  }

  async syncNow() {
    if (this.busy.has('sync')) return;
    this.busy.add('sync');
    const button = byId('syncButton');
    button.disabled = true;
    button.textContent = this.i18n.t('meetings.syncing');
    try {
      await this.api.post('/api/sync');
      this.toast(this.i18n.t('meetings.synced'), 'ok');
    } catch (error) {
      this.toastError(error);
    } finally {
      this.busy.delete('sync');
      button.textContent = this.i18n.t('meetings.syncNow');
      await this.refreshStatus();
    }
  }

  async saveConfig() {
    const t = (key, vars) => this.i18n.t(key, vars);
    const summary = byId('configError');
    const patch = this.form.collect();
    if (Object.keys(patch).length === 0) {
      this.form.showErrors({});
      summary.hidden = true;
      this.toast(t('config.unchanged'), 'info');
      return;
    }
    const button = byId('configSave');
    button.disabled = true;
    button.textContent = t('config.saving');
    try {
      const result = await this.api.post('/api/config', patch);
      if (typeof patch.adminToken === 'string') this.api.setToken(patch.adminToken);
      this.form.showErrors({});
      summary.hidden = true;
      this.form.setConfig(result.config, { force: true });
      const restart = result.restart_required ?? [];
      const overridden = Object.entries(result.overridden_by_start_options ?? {});
      if (overridden.length) this.toast(t('config.savedOverridden', { keys: overridden.map(([key, option]) => `${key} (${option})`).join(', ') }), 'warn');
      else this.toast(restart.length ? t('config.savedRestart', { keys: restart.join(', ') }) : t('config.saved'), restart.length ? 'warn' : 'ok');
      await this.refreshStatus();
    } catch (error) {
      if (error instanceof ApiError && error.status === 400 && error.data?.fields) {
        const unplaced = this.form.showErrors(error.data.fields);
        summary.textContent = [t('config.invalid'), ...unplaced].join(' ');
        summary.hidden = false;
      } else {
        this.toastError(error);
      }
    } finally {
      button.disabled = false;
      button.textContent = t('config.save');
    }
  }

  async loadTraffic() {
    try {
      this.traffic.load(await this.api.get('/api/traffic'));
    } catch (error) {
      if (error.status !== 401) this.toastError(error);
    }
  }

  async loadLogs() {
    try {
      const result = await this.api.get('/api/logs?lines=200');
      this.logLines = result.lines ?? [];
      this.renderLogs(true);
    } catch (error) {
      if (error.status !== 401) this.toastError(error);
    }
  }

  appendLog(lines) {
    if (lines.length === 0) return;
    this.logLines.push(...lines);
    if (this.logLines.length > MAX_LOG_LINES) this.logLines.splice(0, this.logLines.length - MAX_LOG_LINES);
    this.renderLogs(false);
  }

  renderLogs(forceBottom) {
    const view = byId('logView');
    const atBottom = forceBottom || view.scrollTop + view.clientHeight >= view.scrollHeight - 24;
    view.replaceChildren(
      ...(this.logLines.length === 0
        ? [h('span', { className: 'muted' }, this.i18n.t('logs.empty'))]
        : this.logLines.map((line) => logLine(line))),
    );
    if (atBottom) view.scrollTop = view.scrollHeight;
  }

  async downloadDiagnostics() {
    const button = byId('diagnosticsButton');
    button.disabled = true;
    button.textContent = this.i18n.t('logs.preparing');
    try {
      const { blob, name } = await this.api.download('/api/diagnostics');
      const url = URL.createObjectURL(blob);
      const link = h('a', { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      this.toastError(error);
    } finally {
      button.disabled = false;
      button.textContent = this.i18n.t('logs.diagnostics');
    }
  }

  toastError(error) {
    if (error instanceof ApiError && error.status === 401) return;
    const message = error instanceof ApiError && error.status === 0 ? this.i18n.t('error.network') : this.i18n.t('error.generic', { error: this.i18n.serverMessage(error.message) });
    this.toast(message, 'bad');
  }

  toast(message, kind = 'info') {
    const container = byId('toasts');
    const element = h('div', { className: `toast toast-${kind}`, role: kind === 'bad' ? 'alert' : 'status' }, message);
    container.append(element);
    setTimeout(() => element.remove(), kind === 'bad' ? 8000 : 4000);
  }
}

/** A log line with its UTC timestamp shown as local time and zone (the UTC one on hover). */
function logLine(line) {
  const match = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)(?= )/.exec(line);
  const text = match ? `${formatLogTime(match[1])}${line.slice(match[1].length)}` : line;
  return h('span', { className: `log-line ${logClass(line)}`, title: match ? match[1] : null }, `${text}\n`);
}

function logClass(line) {
  if (/ ERROR /.test(line)) return 'log-error';
  if (/ WARN /.test(line)) return 'log-warn';
  if (/ DEBUG /.test(line)) return 'log-debug';
  return '';
}

const panel = new Panel();
void panel.start();

/** The storage card's scrub line: running, never run, or the last result and what it found. */
function scrubText(scrub, t, lang) {
  if (!scrub) return '—';
  if (scrub.running) return t('storage.scrubRunning', { checked: String(scrub.running.packages_checked) });
  const last = scrub.last;
  if (!last) return scrub.next_at ? t('storage.scrubNever', { next: formatDateTimeZone(scrub.next_at, lang) }) : '—';
  const summary = t('storage.scrubLast', { ago: formatAgo(last.finished_at, t), checked: String(last.packages_checked), bytes: formatBytes(last.bytes_checked, lang) });
  const found = last.findings.length === 0 ? t('storage.scrubClean') : t('storage.scrubFindings', { count: String(last.findings.length), ids: last.findings.map((f) => f.meeting_id).join(', ') });
  return `${summary} · ${found}`;
}
