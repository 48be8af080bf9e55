import type { LogFields, Logger, LogLevel } from './logger.ts';

/**
 * A logger that keeps its lines in memory ("info registered with master"), for tests that assert
 * on what was logged. Records every level whatever the threshold, so a test sees debug lines too.
 */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  /** The fields of the info lines that had some, in order. */
  readonly fields: LogFields[] = [];
  level: LogLevel = 'debug';
  readonly #echo: ((line: string) => void) | null;

  /** `echo` also receives each line (a test run may print them while debugging). */
  constructor(echo: ((line: string) => void) | null = null) {
    this.#echo = echo;
  }

  error(message: string): void {
    this.#record('error', message);
  }
  warn(message: string): void {
    this.#record('warn', message);
  }
  info(message: string, fields?: LogFields): void {
    this.#record('info', message);
    if (fields) this.fields.push(fields);
  }
  debug(message: string): void {
    this.#record('debug', message);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #record(level: LogLevel, message: string): void {
    const line = `${level} ${String(message)}`;
    this.lines.push(line);
    this.#echo?.(line);
  }
}
