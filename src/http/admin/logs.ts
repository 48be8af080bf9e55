import { EventEmitter } from 'node:events';
import type { Hono } from 'hono';
import type { Logger } from '../../logger.ts';
import type { AppEnv } from '../app-env.ts';

export interface LogLine {
  /** Increases by one per line, so a reader can tell what it missed. */
  seq: number;
  at: number;
  level: string;
  text: string;
}

/**
 * The most recent log lines, in memory, for /api/logs, the live panel and the diagnostics zip.
 * Bounded: the oldest line goes when a new one arrives at capacity.
 */
export class LogRing {
  readonly capacity: number;
  readonly events = new EventEmitter<{ line: [LogLine] }>();
  #lines: LogLine[] = [];
  #next = 0;
  #seq = 0;
  #now: () => number;

  constructor(capacity = 1000, now: () => number = Date.now) {
    this.capacity = capacity;
    this.#now = now;
    this.events.setMaxListeners(0);
  }

  get size(): number {
    return this.#lines.length;
  }

  push(level: string, message: unknown): LogLine {
    const at = this.#now();
    const text = `${new Date(at).toISOString()} ${level.toUpperCase().padEnd(5)} ${messageText(message)}`;
    const line: LogLine = { seq: ++this.#seq, at, level, text };
    if (this.#lines.length < this.capacity) {
      this.#lines.push(line);
    } else {
      this.#lines[this.#next] = line;
      this.#next = (this.#next + 1) % this.capacity;
    }
    this.events.emit('line', line);
    return line;
  }

  /** The last `count` lines, oldest first. */
  recent(count = this.capacity): LogLine[] {
    const ordered = this.#lines.length < this.capacity ? this.#lines : [...this.#lines.slice(this.#next), ...this.#lines.slice(0, this.#next)];
    return count >= ordered.length ? [...ordered] : ordered.slice(ordered.length - count);
  }
}

function messageText(message: unknown): string {
  if (typeof message === 'string') return message;
  if (message instanceof Error) return message.message;
  try {
    return JSON.stringify(message) ?? String(message);
  } catch {
    return String(message);
  }
}

const TAPPED_LEVELS = new Set(['error', 'warn', 'info', 'debug']);

/**
 * The same logger, with every line it would write also recorded in `ring`. A proxy rather than a
 * winston transport: callers may hand the node a logger whose level methods are replaced (the
 * tests' memory logger), which a transport would never see.
 */
export function tapLogger(logger: Logger, ring: LogRing): Logger {
  const wrappers = new Map<string, (message: unknown, ...rest: unknown[]) => Logger>();
  const target = logger as unknown as Record<string | symbol, unknown>;
  return new Proxy(logger, {
    get(object, property) {
      if (typeof property === 'string' && TAPPED_LEVELS.has(property)) {
        let wrapper = wrappers.get(property);
        if (!wrapper) {
          wrapper = (message: unknown, ...rest: unknown[]) => {
            if (object.isLevelEnabled?.(property) ?? true) ring.push(property, message);
            return (target[property] as (...args: unknown[]) => Logger).call(object, message, ...rest);
          };
          wrappers.set(property, wrapper);
        }
        return wrapper;
      }
      const value = Reflect.get(object, property, object);
      return typeof value === 'function' ? value.bind(object) : value;
    },
    set(object, property, value) {
      return Reflect.set(object, property, value, object);
    },
  });
}

/** GET /api/logs?lines=N: the last N lines (1–1000, default 200), oldest first. */
export function registerLogRoutes(app: Hono<AppEnv>, ring: LogRing): void {
  app.get('/api/logs', (c) => {
    const raw = c.req.query('lines');
    const max = Math.min(1000, ring.capacity);
    let count = 200;
    if (raw !== undefined) {
      if (!/^\d{1,7}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
        const message = `must be an integer from 1 to ${max}`;
        return c.json({ error: `lines ${message}`, fields: { lines: message } }, 400);
      }
      count = Number(raw);
    }
    const lines = ring.recent(count);
    return c.json({ lines: lines.map((line) => line.text), last_seq: lines.at(-1)?.seq ?? null });
  });
}
