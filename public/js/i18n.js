// Language choice and lookup. The strings live in ../i18n/<lang>.js, one file per language.
const SUPPORTED = ['en', 'zh-CN'];
const STORAGE_KEY = 'meeting-edge.lang';

export function detectLanguage(saved, browserLanguages) {
  if (SUPPORTED.includes(saved)) return saved;
  for (const lang of browserLanguages) {
    const lower = String(lang).toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return 'en';
}

export class I18n {
  constructor() {
    this.lang = 'en';
    this.strings = {};
    this.fallback = {};
    this.listeners = new Set();
  }

  async init() {
    let saved = null;
    try {
      saved = localStorage.getItem(STORAGE_KEY);
    } catch {
      // Storage may be disabled; the browser language decides then.
    }
    this.fallback = (await import('../i18n/en.js')).default;
    await this.use(detectLanguage(saved, navigator.languages?.length ? navigator.languages : [navigator.language]), false);
  }

  async use(lang, remember = true) {
    if (!SUPPORTED.includes(lang)) lang = 'en';
    this.strings = lang === 'en' ? this.fallback : (await import(`../i18n/${lang}.js`)).default;
    this.lang = lang;
    document.documentElement.lang = lang;
    if (remember) {
      try {
        localStorage.setItem(STORAGE_KEY, lang);
      } catch {
        // Not remembered across visits; still applied now.
      }
    }
    this.apply(document);
    for (const listener of this.listeners) listener(lang);
  }

  onChange(listener) {
    this.listeners.add(listener);
  }

  t(key, vars = {}) {
    const template = this.strings[key] ?? this.fallback[key] ?? key;
    return String(template).replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
  }

  has(key) {
    return key in this.strings || key in this.fallback;
  }

  /** Server validation messages are English; translate the known shapes. */
  serverMessage(message) {
    for (const [pattern, replacement] of this.strings.serverMessages ?? []) {
      if (pattern.test(message)) return message.replace(pattern, replacement);
    }
    return message;
  }

  /** Fills every [data-i18n] element under root with its string. */
  apply(root) {
    for (const element of root.querySelectorAll('[data-i18n]')) {
      element.textContent = this.t(element.dataset.i18n);
    }
    document.title = this.t('app.title');
  }
}
