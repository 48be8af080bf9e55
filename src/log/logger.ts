import { mkdirSync } from 'node:fs';
import path from 'node:path';
import winston from 'winston';

/** Structured facts of a log line (JSON-serializable values). */
export type LogFields = Record<string, string | number | boolean | null>;

/** How lines are written: `text` for people, `json` (one object per line) for log shippers. */
export type LogFormat = 'text' | 'json';

/** winston's npm names of the levels the node writes, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

const SEVERITY: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/**
 * What the node's modules log through: four levels, the threshold (the config applies
 * logging.level live) and close. Narrow on purpose: tests hand in a MemoryLogger
 * (memory-logger.ts), the admin log view wraps one (log-ring.ts), neither needs winston.
 */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  /**
   * `fields`: the line's facts as data (the access log's client, status, bytes...): written as
   * keys of the JSON object with logging.format json; the text line is `message` alone.
   */
  info(message: string, fields?: LogFields): void;
  debug(message: string): void;
  /** Lines below this level are dropped. */
  level: LogLevel;
  /** Flushes what was written and releases the files; resolves within a second at most. */
  close(): Promise<void>;
}

/** True when a line of `level` passes a logger whose threshold is `threshold`. */
export function levelEnabled(threshold: LogLevel, level: LogLevel): boolean {
  return SEVERITY[level] <= SEVERITY[threshold];
}

export interface LoggerOptions {
  /** The config's logging.level (the reference node's Python names are accepted). */
  level: string;
  /** Absolute path of the log file, or null for console only. */
  filePath: string | null;
  maxFileSize: number;
  backupCount: number;
  console?: boolean;
  /** logging.format; default text. */
  format?: LogFormat;
}

/** Maps the reference node's Python level names onto winston's npm levels. */
export function toLogLevel(level: string): LogLevel {
  switch (level.toUpperCase()) {
    case 'DEBUG':
      return 'debug';
    case 'WARNING':
    case 'WARN':
      return 'warn';
    case 'ERROR':
    case 'CRITICAL':
      return 'error';
    default:
      return 'info';
  }
}

// Structured fields travel under this key, so the text line can leave them out.
const FIELDS = 'fields';

const lineFormat = winston.format.printf(({ timestamp, level, message, [FIELDS]: _fields, ...meta }) => {
  const rest = Object.keys(meta).length ? ` ${JSON.stringify(meta)}` : '';
  return `${timestamp} ${level.toUpperCase().padEnd(5)} ${message}${rest}`;
});

/** One JSON object per line: time, level, message, then the line's fields as keys. */
const jsonFormat = winston.format.printf(({ timestamp, level, message, [FIELDS]: fields, ...meta }) =>
  JSON.stringify({ time: timestamp, level, message, ...meta, ...(fields as LogFields | undefined) }),
);

/** The production logger: console and a size-rotated file, through winston. */
class WinstonLogger implements Logger {
  readonly #winston: winston.Logger;
  /** Closed (the node stopped): winston's streams are ended, and a write would crash the process. */
  #closed = false;

  constructor(logger: winston.Logger) {
    this.#winston = logger;
  }

  error(message: string): void {
    if (this.#closed) return void process.stderr.write(`ERROR ${message}\n`);
    this.#winston.error(message);
  }
  warn(message: string): void {
    if (this.#closed) return void process.stderr.write(`WARN  ${message}\n`);
    this.#winston.warn(message);
  }
  info(message: string, fields?: LogFields): void {
    if (this.#closed) return;
    if (fields) this.#winston.info(message, { [FIELDS]: fields });
    else this.#winston.info(message);
  }
  debug(message: string): void {
    if (this.#closed) return;
    this.#winston.debug(message);
  }

  get level(): LogLevel {
    return this.#winston.level as LogLevel;
  }
  set level(level: LogLevel) {
    this.#winston.level = level;
  }

  close(): Promise<void> {
    this.#closed = true;
    return new Promise<void>((resolve) => {
      this.#winston.on('finish', () => resolve());
      this.#winston.end();
      // A file transport stuck on a full disk must not hold the shutdown.
      setTimeout(resolve, 1000).unref();
    });
  }
}

export function createLogger(options: LoggerOptions): Logger {
  const transports: winston.transport[] = [];
  if (options.console !== false) {
    transports.push(new winston.transports.Console());
  }
  if (options.filePath) {
    mkdirSync(path.dirname(options.filePath), { recursive: true });
    // Size-based rotation like the reference's RotatingFileHandler: node.log, node1.log, ...
    transports.push(
      new winston.transports.File({
        filename: options.filePath,
        maxsize: options.maxFileSize,
        maxFiles: options.backupCount + 1,
        tailable: true,
      }),
    );
  }
  return new WinstonLogger(
    winston.createLogger({
      level: toLogLevel(options.level),
      format: winston.format.combine(winston.format.timestamp(), options.format === 'json' ? jsonFormat : lineFormat),
      transports,
      // A test or embedded node may run with no transport at all; winston warns otherwise.
      silent: transports.length === 0,
    }),
  );
}
