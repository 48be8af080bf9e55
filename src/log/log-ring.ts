import { EventEmitter } from 'node:events';
import { levelEnabled, type Logger, type LogLevel } from './logger.ts';

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

/**
 * The same logger, with every line it writes also recorded in `ring`. A wrapper rather than a
 * winston transport: callers may hand the node any Logger (the tests' MemoryLogger), which a
 * transport would never see.
 */
export function tapLogger(logger: Logger, ring: LogRing): Logger {
  const record = (level: LogLevel, message: string) => {
    if (levelEnabled(logger.level, level)) ring.push(level, message);
  };
  return {
    error(message) {
      record('error', message);
      logger.error(message);
    },
    warn(message) {
      record('warn', message);
      logger.warn(message);
    },
    info(message, fields) {
      record('info', message);
      logger.info(message, fields);
    },
    debug(message) {
      record('debug', message);
      logger.debug(message);
    },
    get level() {
      return logger.level;
    },
    set level(level: LogLevel) {
      logger.level = level;
    },
    close: () => logger.close(),
  };
}
