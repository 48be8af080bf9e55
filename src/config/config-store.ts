import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Conf from 'conf';
import { configSchema, type NodeConfig } from './schema.ts';
import { createConfigValidator, describeFieldErrors, type ConfigValidator } from './validate.ts';

/** A config file that cannot be used: the node refuses to start and says why; the file is left alone. */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly fields: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type ConfigUpdateResult =
  | { ok: true; config: NodeConfig; changed: string[] }
  | { ok: false; fields: Record<string, string> };

type Listener = (config: NodeConfig, previous: NodeConfig, changed: string[]) => void;

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const MAX_PATCH_DEPTH = 32;

/** Depth of nested objects/arrays, computed without recursion (stops counting past the limit). */
function nestingDepth(root: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > MAX_PATCH_DEPTH) return deepest;
    for (const child of Object.values(value)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/**
 * Owns node_config.json through conf: conf reads the file, validates it against the schema, fills
 * the defaults and writes it back atomically (temp file + rename, mode 0600). An invalid file is
 * refused by conf before anything is written; the error then names every bad key (our validator,
 * same schema). Reads come from an in-memory snapshot: conf re-reads and re-validates the file on
 * every access, far too slow for the request path.
 */
export class ConfigStore {
  readonly filePath: string;
  readonly directory: string;
  #conf: Conf<Record<string, unknown>>;
  #current: NodeConfig;
  #validator: ConfigValidator;
  #listeners = new Set<Listener>();

  private constructor(filePath: string, conf: Conf<Record<string, unknown>>, current: NodeConfig, validator: ConfigValidator) {
    this.filePath = filePath;
    this.directory = path.dirname(filePath);
    this.#conf = conf;
    this.#current = current;
    this.#validator = validator;
  }

  /** Loads (or creates) the config file. Throws ConfigError for unreadable, non-JSON or invalid files. */
  static open(filePath: string, validator: ConfigValidator = createConfigValidator()): ConfigStore {
    const absolute = path.resolve(filePath);
    const ext = path.extname(absolute);
    let conf: Conf<Record<string, unknown>>;
    let stored: Record<string, unknown>;
    try {
      conf = new Conf<Record<string, unknown>>({
        cwd: path.dirname(absolute),
        configName: path.basename(absolute, ext),
        fileExtension: ext.replace(/^\./, ''),
        schema: configSchema.properties as never,
        clearInvalidConfig: false,
        accessPropertiesByDotNotation: false,
        // An empty file is an empty config (every default), as the reference node treats it.
        deserialize: (text) => (text.trim() === '' ? {} : JSON.parse(text)) as Record<string, unknown>,
        // Same layout as the reference node writes (4-space JSON), so diffs stay readable.
        serialize: (value) => `${JSON.stringify(value, null, 4)}\n`,
        // The file holds the admin token: readable by the node's user only.
        configFileMode: 0o600,
      });
      stored = conf.store;
    } catch (error) {
      throw openError(absolute, error as Error, validator);
    }
    // conf filled the top-level defaults; the validator fills the nested ones and types the result.
    const checked = validator.validate(stored);
    if (!checked.ok) throw new ConfigError(`${absolute}: ${describeFieldErrors(checked.fields)}`, checked.fields);
    let current = checked.value;
    if (!current.nodeId) {
      current = { ...current, nodeId: `node-${randomBytes(4).toString('hex')}` };
    }
    // Persist defaults and a generated nodeId once.
    if (JSON.stringify(stored) !== JSON.stringify(current)) {
      conf.store = current as unknown as Record<string, unknown>;
    }
    return new ConfigStore(absolute, conf, current, validator);
  }

  get current(): NodeConfig {
    return this.#current;
  }

  /** Resolves a path from the config against the config file's folder (absolute paths stay). */
  resolvePath(configuredPath: string): string {
    return path.resolve(this.directory, configuredPath);
  }

  validate(input: unknown) {
    return this.#validator.validate(input);
  }

  /**
   * Deep-merges `patch` into the current config, validates the result and, only if valid, saves it
   * atomically and notifies listeners. A full config is just a patch that sets every key.
   */
  update(patch: unknown): ConfigUpdateResult {
    if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) {
      return { ok: false, fields: { '': 'must be a JSON object' } };
    }
    // Everything below recurses over the patch; a body nested thousands of levels deep (64 KiB
    // allows that) would overflow the stack. No real setting is deeper than 2.
    if (nestingDepth(patch) > MAX_PATCH_DEPTH) {
      return { ok: false, fields: { '': `is nested deeper than ${MAX_PATCH_DEPTH} levels` } };
    }
    const forbidden = findForbiddenKey(patch, '');
    if (forbidden !== null) return { ok: false, fields: { [forbidden]: 'is not a known setting' } };
    const merged = deepMerge(structuredClone(this.#current) as unknown as Record<string, unknown>, patch as Record<string, unknown>);
    const checked = this.#validator.validate(merged);
    if (!checked.ok) return checked;
    if (!checked.value.nodeId) checked.value.nodeId = this.#current.nodeId;
    const previous = this.#current;
    const changed = diffKeys(previous, checked.value);
    if (changed.length === 0) return { ok: true, config: previous, changed };
    this.#conf.store = checked.value as unknown as Record<string, unknown>;
    this.#current = checked.value;
    for (const listener of this.#listeners) listener(this.#current, previous, changed);
    return { ok: true, config: this.#current, changed };
  }

  onChange(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/**
 * Why conf refused the file, as a ConfigError: not readable, not JSON, or the keys the schema
 * refuses (conf's own message names only the first path of each; ours names every key).
 */
function openError(file: string, error: Error, validator: ConfigValidator): ConfigError {
  if (error instanceof SyntaxError) return new ConfigError(`${file}: not valid JSON (${error.message})`);
  if ((error as NodeJS.ErrnoException).code) return new ConfigError(`${file}: cannot read (${error.message})`);
  let raw: unknown;
  try {
    const text = readFileSync(file, 'utf8');
    raw = text.trim() === '' ? {} : JSON.parse(text);
  } catch (reread) {
    return new ConfigError(`${file}: cannot read (${(reread as Error).message})`);
  }
  const checked = validator.validate(raw);
  if (!checked.ok) return new ConfigError(`${file}: ${describeFieldErrors(checked.fields)}`, checked.fields);
  return new ConfigError(`${file}: ${error.message}`);
}

function findForbiddenKey(value: unknown, prefix: string): string | null {
  if (typeof value !== 'object' || value === null) return null;
  for (const key of Object.keys(value)) {
    const full = prefix ? `${prefix}.${key}` : key;
    if (FORBIDDEN_KEYS.has(key)) return full;
    const nested = findForbiddenKey((value as Record<string, unknown>)[key], full);
    if (nested !== null) return nested;
  }
  return null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepMerge(target: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(patch)) {
    const existing = target[key];
    target[key] = isPlainObject(existing) && isPlainObject(value) ? deepMerge(existing, value) : value;
  }
  return target;
}

/** Dotted paths of the leaves that differ, e.g. ['heartbeat.interval']. */
export function diffKeys(a: unknown, b: unknown, prefix = ''): string[] {
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((key) => diffKeys(a[key], b[key], prefix ? `${prefix}.${key}` : key));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}
