// The configuration form, generated from the node's JSON Schema (GET /api/config/schema): the
// inputs, ranges and choices are the ones the node validates with. Only changed values are sent.
import { h } from './dom.js';
import { SIZE_UNITS, sizeUnitFactor, splitSize } from './format.js';

const GROUPS = [
  ['general', ['mainServerIp', 'mainServerPort', 'syncInterval', 'watchInterval', 'nodeId', 'nodePort', 'usePublicAddress', 'publicIp', 'publicPort']],
  ['security', ['adminToken', 'metricsPublic']],
];
const OBJECT_GROUPS = ['storage', 'network', 'logging', 'heartbeat', 'cleanup', 'maintenance', 'peers', 'preheat'];
const READ_ONLY = new Set(['nodeId']);
/** Write-only: never shown (the node sends a placeholder when one is set), sent only when typed. */
const SECRET = new Set(['adminToken', 'peers.key', 'peers.previousKeys']);
/** Saved at once but used only after a restart (the node reports the same list). */
const RESTART = new Set(['nodePort', 'storage.path', 'logging.fileEnabled', 'logging.filePath', 'logging.maxFileSize', 'logging.backupCount', 'logging.format']);
const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
/** Byte counts typed as a number and a unit (KiB/MiB/GiB); the node still gets bytes. */
const SIZE_FIELDS = new Set(['storage.maxSize', 'logging.maxFileSize']);

export class ConfigForm {
  constructor(container, i18n) {
    this.container = container;
    this.i18n = i18n;
    this.schema = null;
    this.config = null;
    this.fields = new Map();
    this.errors = {};
    /** Settings a start option overrides in the running node ({ nodePort: '--port' }). */
    this.overrides = {};
  }

  /** From the status: a field set by a start option says so (saving it changes nothing while it is given). */
  setOverrides(overrides) {
    const next = overrides ?? {};
    if (JSON.stringify(next) === JSON.stringify(this.overrides)) return;
    this.overrides = next;
    this.rerender();
  }

  setSchema(schema) {
    this.schema = schema;
  }

  /** New values from the node; fields the operator is editing keep their input unless forced. */
  setConfig(config, { force = false } = {}) {
    const edited = force ? new Map() : this.#editedValues();
    this.config = config;
    this.render();
    for (const [path, raw] of edited) this.#setRaw(path, raw);
  }

  /** Rebuilds the inputs (language change), keeping whatever is typed in them. */
  rerender() {
    const typed = this.#rawValues();
    this.render();
    for (const [path, raw] of typed) this.#setRaw(path, raw);
    this.showErrors(this.errors);
  }

  render() {
    if (!this.schema || !this.config) return;
    const t = (key, vars) => this.i18n.t(key, vars);
    this.fields.clear();
    const properties = this.schema.properties ?? {};
    const placed = new Set([...GROUPS.flatMap(([, keys]) => keys), ...OBJECT_GROUPS]);
    const groups = GROUPS.map(([name, keys]) => [name, keys.filter((key) => key in properties).map((key) => [key, properties[key]])]);
    // Settings a newer node may add still get a field.
    for (const [key, spec] of Object.entries(properties)) {
      if (!placed.has(key) && spec.type !== 'object') groups[0][1].push([key, spec]);
    }
    for (const name of OBJECT_GROUPS) {
      const spec = properties[name];
      if (spec?.type === 'object') groups.push([name, Object.entries(spec.properties ?? {}).map(([key, child]) => [`${name}.${key}`, child])]);
    }
    const fieldsets = groups.map(([name, entries]) =>
      h('fieldset', { className: 'config-group', dataset: { group: name } }, h('legend', {}, t(`group.${name}`)), ...entries.map(([path, spec]) => this.#field(path, spec))),
    );
    this.container.replaceChildren(...fieldsets);
  }

  /** The changed settings as a nested partial config ({} when nothing changed). */
  collect() {
    const patch = {};
    for (const [path, field] of this.fields) {
      if (READ_ONLY.has(path)) continue;
      const value = this.#value(field);
      if (SECRET.has(path)) {
        if (value !== null && value !== '' && !(Array.isArray(value) && value.length === 0)) setPath(patch, path, value);
        continue;
      }
      if (JSON.stringify(value) !== JSON.stringify(getPath(this.config, path) ?? null)) setPath(patch, path, value);
    }
    return patch;
  }

  /** Marks the fields the node rejected; returns the messages not tied to a field. */
  showErrors(fields) {
    this.errors = fields ?? {};
    const unplaced = [];
    const placed = new Set();
    for (const [path, field] of this.fields) {
      const message = this.#messageFor(path, field, placed);
      field.error.textContent = message ?? '';
      field.error.hidden = !message;
      if (message) field.input.setAttribute('aria-invalid', 'true');
      else field.input.removeAttribute('aria-invalid');
      field.wrapper.classList.toggle('has-error', Boolean(message));
    }
    for (const [path, message] of Object.entries(this.errors)) {
      if (!placed.has(path)) unplaced.push(`${path || '(config)'}: ${this.i18n.serverMessage(message)}`);
    }
    const first = [...this.fields.values()].find((field) => field.wrapper.classList.contains('has-error'));
    first?.input.focus();
    return unplaced;
  }

  /**
   * The text shown beside a field, or null. A list's entries are named by the node as
   * "<path>.<index>": shown beside the list with the entry as typed.
   */
  #messageFor(path, field, placed) {
    const t = (key, vars) => this.i18n.t(key, vars);
    const messages = [];
    if (this.errors[path] !== undefined) {
      placed.add(path);
      messages.push(field.type === 'array' ? listMessage(this.errors[path], t, this.i18n) : this.i18n.serverMessage(this.errors[path]));
    }
    if (field.type === 'array') {
      const items = this.#value(field);
      for (const [key, message] of Object.entries(this.errors)) {
        const index = key.startsWith(`${path}.`) ? key.slice(path.length + 1) : null;
        if (index === null || !/^\d+$/.test(index)) continue;
        placed.add(key);
        const text = /^must (match pattern|be host:port)/.test(message) && this.i18n.has(`field.${path}.item`) ? t(`field.${path}.item`) : this.i18n.serverMessage(message);
        messages.push(t('config.itemError', { item: Array.isArray(items) ? (items[Number(index)] ?? index) : index, message: text }));
      }
    }
    return messages.length ? messages.join('; ') : null;
  }

  #field(path, spec) {
    const t = (key, vars) => this.i18n.t(key, vars);
    const id = `cfg-${path.replace(/\./g, '-')}`;
    const types = Array.isArray(spec.type) ? spec.type : [spec.type];
    const nullable = types.includes('null');
    const type = types.find((candidate) => candidate !== 'null') ?? 'string';
    const current = getPath(this.config, path);
    const label = this.i18n.has(`field.${path}`) ? t(`field.${path}`) : path;
    const errorId = `${id}-error`;
    let input;
    let unitSelect = null;
    if (SIZE_FIELDS.has(path) && type === 'integer') {
      const { amount, unit } = splitSize(current);
      input = h('input', { type: 'number', id, name: path, inputmode: 'decimal', step: 'any', min: '0', 'aria-describedby': errorId });
      input.value = amount;
      unitSelect = h('select', { name: `${path}:unit`, 'aria-label': t('config.unit'), dataset: { unitFor: path } }, ...SIZE_UNITS.map(([name]) => h('option', { value: name }, name)));
      unitSelect.value = unit;
    } else if (type === 'array') {
      // A list of strings (peers.static): one entry per line, sent as a JSON array.
      input = h('textarea', { id, name: path, rows: '3', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': errorId });
      input.value = Array.isArray(current) && !SECRET.has(path) ? current.join('\n') : '';
      if (SECRET.has(path)) input.placeholder = secretPlaceholder(current, t);
    } else if (type === 'boolean') {
      input = h('input', { type: 'checkbox', id, name: path, 'aria-describedby': errorId });
      input.checked = current === true;
    } else if (Array.isArray(spec.enum)) {
      const choices = path === 'logging.level' ? [...new Set([...LEVELS, String(current ?? '').toUpperCase()])].filter(Boolean) : spec.enum;
      input = h('select', { id, name: path, 'aria-describedby': errorId }, ...choices.map((choice) => h('option', { value: choice }, choice)));
      input.value = path === 'logging.level' ? String(current ?? 'INFO').toUpperCase().replace(/^WARN$/, 'WARNING') : String(current ?? '');
    } else if (type === 'integer' || type === 'number') {
      input = h('input', {
        type: 'number',
        id,
        name: path,
        inputmode: type === 'integer' ? 'numeric' : 'decimal',
        step: type === 'integer' ? '1' : 'any',
        min: spec.minimum,
        max: spec.maximum,
        placeholder: nullable ? t('config.nullPlaceholder') : null,
        'aria-describedby': errorId,
      });
      input.value = current === null || current === undefined ? '' : String(current);
    } else {
      input = h('input', {
        type: SECRET.has(path) ? 'password' : 'text',
        id,
        name: path,
        spellcheck: 'false',
        autocomplete: SECRET.has(path) ? 'new-password' : 'off',
        minlength: SECRET.has(path) ? spec.minLength : null,
        placeholder: SECRET.has(path) ? secretPlaceholder(current, t) : nullable ? t('config.nullPlaceholder') : null,
        'aria-describedby': errorId,
      });
      input.value = SECRET.has(path) || current === null || current === undefined ? '' : String(current);
    }
    if (READ_ONLY.has(path)) {
      input.readOnly = true;
      input.title = t('config.readonly');
    }
    const override = this.overrides[path];
    const hint = override ? t('config.overridden', { option: override }) : unitSelect ? sizeHint(spec, t) : type === 'array' ? (this.i18n.has(`field.${path}.hint`) ? t(`field.${path}.hint`) : t('config.onePerLine')) : rangeHint(spec, t);
    const badge = RESTART.has(path) ? h('span', { className: 'badge', title: t('config.restartTitle') }, t('config.restartBadge')) : null;
    const error = h('span', { className: 'field-error', id: errorId, role: 'alert', dataset: { errorFor: path } });
    error.hidden = true;
    const wrapper =
      type === 'boolean'
        ? h('div', { className: 'field field-check', dataset: { field: path } }, h('label', { for: id }, input, h('span', { className: 'field-label' }, label), badge), error)
        : h(
            'div',
            { className: 'field', dataset: { field: path } },
            h('label', { className: 'field-label', for: id }, label, badge),
            unitSelect ? h('div', { className: 'size-input' }, input, unitSelect) : input,
            hint ? h('span', { className: 'field-hint' }, hint) : null,
            error,
          );
    this.fields.set(path, { input, unitSelect, error, wrapper, type, nullable });
    return wrapper;
  }

  #value(field) {
    const { input, type, nullable, unitSelect } = field;
    if (type === 'boolean') return input.checked;
    // Entries never hold spaces or commas (host:port): either separates them, empty lines are dropped.
    if (type === 'array') return input.value.split(/[\s,]+/).filter(Boolean);
    const raw = input.value.trim();
    if (raw === '') return nullable ? null : type === 'string' ? '' : raw;
    if (unitSelect) {
      const number = Number(raw);
      return Number.isFinite(number) ? Math.round(number * sizeUnitFactor(unitSelect.value)) : raw;
    }
    if (type === 'integer' || type === 'number') {
      const number = Number(raw);
      // Not a number: sent as typed so the node names the field in its answer.
      return Number.isFinite(number) ? number : raw;
    }
    return raw;
  }

  #rawValues() {
    const values = new Map();
    for (const [path, field] of this.fields) values.set(path, rawOf(field));
    return values;
  }

  #editedValues() {
    const values = new Map();
    for (const [path, field] of this.fields) {
      const value = this.#value(field);
      const changed = SECRET.has(path) ? value !== null && value !== '' : JSON.stringify(value) !== JSON.stringify(getPath(this.config, path) ?? null);
      if (changed) values.set(path, rawOf(field));
    }
    return values;
  }

  #setRaw(path, raw) {
    const field = this.fields.get(path);
    if (!field) return;
    if (field.type === 'boolean') field.input.checked = Boolean(raw);
    else if (field.unitSelect && typeof raw === 'object') {
      field.input.value = raw.amount;
      field.unitSelect.value = raw.unit;
    } else field.input.value = raw;
  }
}

/** What is typed in a field, as #setRaw takes it back. */
function rawOf(field) {
  if (field.type === 'boolean') return field.input.checked;
  if (field.unitSelect) return { amount: field.input.value, unit: field.unitSelect.value };
  return field.input.value;
}

/** A whole-list message from the node (duplicates, too many entries) in the panel's words. */
function listMessage(message, t, i18n) {
  if (/^must NOT have duplicate items/.test(message)) return t('config.duplicateItems');
  const max = /^must NOT have more than (\d+) items$/.exec(message);
  if (max) return t('config.maxItems', { max: max[1] });
  return i18n.serverMessage(message);
}

function sizeHint(spec, t) {
  if (typeof spec.minimum !== 'number' || spec.minimum === 0) return '';
  const { amount, unit } = splitSize(spec.minimum);
  return t('config.min', { min: `${amount} ${unit}` });
}

function rangeHint(spec, t) {
  const has = (value) => typeof value === 'number';
  if (has(spec.minimum) && has(spec.maximum)) return t('config.range', { min: spec.minimum, max: spec.maximum });
  if (has(spec.minimum)) return t('config.min', { min: spec.minimum });
  if (has(spec.maximum)) return t('config.max', { max: spec.maximum });
  return '';
}

function getPath(object, path) {
  return path.split('.').reduce((value, key) => (value && typeof value === 'object' ? value[key] : undefined), object);
}

function setPath(object, path, value) {
  const keys = path.split('.');
  let target = object;
  for (const key of keys.slice(0, -1)) target = target[key] ??= {};
  target[keys.at(-1)] = value;
}

/** A write-only field says whether a value is set, never the value ("unchanged" / "not set"). */
function secretPlaceholder(current, t) {
  const set = Array.isArray(current) ? current.length > 0 : current !== null && current !== undefined && current !== '';
  return set ? t('config.tokenPlaceholder') : t('config.secretUnset');
}
