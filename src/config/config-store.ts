import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import Conf from 'conf';
import type { NodeConfig } from './schema.ts';
import { describeJsonError } from './json-error.ts';
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
 * Owns node_config.json. The file is read and validated against the schema here (a refused file
 * is never written); the node's start writes it back once it runs (completeFile: defaults, the
 * generated nodeId, a generated admin token), and config changes are saved through conf
 * (temp file + rename, mode 0600). A start that fails writes nothing. Reads come from an
 * in-memory snapshot: conf re-reads and re-validates the file on every access, far too slow for
 * the request path.
 */
export class ConfigStore {
  readonly filePath: string;
  readonly directory: string;
  #conf: Conf<Record<string, unknown>> | null = null;
  #current: NodeConfig;
  /** What the file holds (JSON text of the parsed object), null when there is no file yet. */
  #onDisk: string | null;
  #validator: ConfigValidator;
  #listeners = new Set<Listener>();

  private constructor(filePath: string, current: NodeConfig, onDisk: string | null, validator: ConfigValidator) {
    this.filePath = filePath;
    this.directory = path.dirname(filePath);
    this.#current = current;
    this.#onDisk = onDisk;
    this.#validator = validator;
  }

  /**
   * Reads the config file, or the defaults when there is none yet in an existing folder (a folder
   * that does not exist is a mistyped path, not a new node). Writes nothing. Throws ConfigError
   * for a missing folder and for unreadable, non-JSON or invalid files.
   */
  static open(filePath: string, validator: ConfigValidator = createConfigValidator()): ConfigStore {
    const absolute = path.resolve(filePath);
    const text = readConfigText(absolute);
    let stored: unknown;
    try {
      // An empty file is an empty config (every default), as the reference node treats it.
      stored = text === null || text.trim() === '' ? {} : JSON.parse(text);
    } catch (error) {
      throw new ConfigError(`${absolute}: ${describeJsonError(text ?? '', error as SyntaxError)}`);
    }
    const checked = validator.validate(stored);
    if (!checked.ok) throw new ConfigError(`${absolute}: ${describeFieldErrors(checked.fields)}`, checked.fields);
    let current = checked.value;
    if (!current.nodeId) current = { ...current, nodeId: `node-${randomBytes(4).toString('hex')}` };
    return new ConfigStore(absolute, current, text === null ? null : JSON.stringify(stored), validator);
  }

  /**
   * Writes the file as the node runs with it (the defaults, the generated nodeId) plus `extra`
   * (a generated admin token), if that differs from what it holds. Called once the node listens:
   * not a change, so no listener hears of it.
   */
  completeFile(extra: Partial<NodeConfig> = {}): void {
    const next = { ...this.#current, ...extra };
    if (JSON.stringify(next) === this.#onDisk) return;
    try {
      this.#save(next);
    } catch (error) {
      // A read-only config folder (or file): the start is refused in one line, like an unusable path.
      throw new ConfigError(`${this.filePath}: cannot be written (${(error as Error).message})`);
    }
    this.#current = next;
  }

  #save(config: NodeConfig): void {
    this.#conf ??= openConf(this.filePath);
    this.#conf.store = config as unknown as Record<string, unknown>;
    this.#onDisk = JSON.stringify(config);
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
    this.#save(checked.value);
    this.#current = checked.value;
    for (const listener of this.#listeners) listener(this.#current, previous, changed);
    return { ok: true, config: this.#current, changed };
  }

  onChange(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** The file's text; null when it does not exist in a folder that does. */
function readConfigText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new ConfigError(`${file}: cannot read (${(error as Error).message})`);
  }
  const folder = path.dirname(file);
  let isFolder = false;
  try {
    isFolder = statSync(folder).isDirectory();
  } catch {
    // Missing, or a part of the path is a file: either way no folder to create the file in.
  }
  if (!isFolder) {
    throw new ConfigError(`${file}: the folder ${folder} does not exist (a new config file is created only in an existing folder: check the --config path, or create the folder)`);
  }
  return null;
}

/** conf over the file: atomic writes, mode 0600, the same 4-space layout the reference node writes. */
function openConf(file: string): Conf<Record<string, unknown>> {
  const ext = path.extname(file);
  return new Conf<Record<string, unknown>>({
    cwd: path.dirname(file),
    configName: path.basename(file, ext),
    fileExtension: ext.replace(/^\./, ''),
    // No schema: every write is validated first by the one compiled validator (validate.ts);
    // a schema here would compile the same rules a second time (Ajv code, ~MiBs of heap).
    clearInvalidConfig: false,
    accessPropertiesByDotNotation: false,
    deserialize: (text) => (text.trim() === '' ? {} : JSON.parse(text)) as Record<string, unknown>,
    serialize: (value) => `${JSON.stringify(value, null, 4)}\n`,
    // The file holds the admin token: readable by the node's user only.
    configFileMode: 0o600,
  });
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
