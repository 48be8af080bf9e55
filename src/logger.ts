import { mkdirSync } from 'node:fs';
import path from 'node:path';
import winston from 'winston';
import type { LogLevelName } from './config/schema.ts';

export type Logger = winston.Logger;

export interface LoggerOptions {
  level: LogLevelName;
  /** Absolute path of the log file, or null for console only. */
  filePath: string | null;
  maxFileSize: number;
  backupCount: number;
  console?: boolean;
}

/** Maps the reference node's Python level names onto winston's npm levels. */
export function toWinstonLevel(level: LogLevelName): string {
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

const lineFormat = winston.format.printf(({ timestamp, level, message, ...meta }) => {
  const rest = Object.keys(meta).length ? ` ${JSON.stringify(meta)}` : '';
  return `${timestamp} ${level.toUpperCase().padEnd(5)} ${message}${rest}`;
});

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
  return winston.createLogger({
    level: toWinstonLevel(options.level),
    format: winston.format.combine(winston.format.timestamp(), lineFormat),
    transports,
    // A test or embedded node may run with no transport at all; winston warns otherwise.
    silent: transports.length === 0,
  });
}
