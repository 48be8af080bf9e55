import { readFileSync } from 'node:fs';

/** The version in meeting-edge's package.json, or 'unknown' (missing, unreadable, another package's). */
export function readPackageVersion(packageJson: string): string {
  try {
    const parsed = JSON.parse(readFileSync(packageJson, 'utf8')) as { name?: string; version?: string };
    return parsed.name === 'meeting-edge' && parsed.version ? parsed.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
