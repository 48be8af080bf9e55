import { randomBytes } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Hono } from 'hono';
import type { AppEnv } from '../app-env.ts';
import { reject, type AdminAuth } from './auth.ts';
import type { NodeMetrics } from './metrics.ts';

export interface HealthDeps {
  storageRoot: string;
  /** The config in memory still passes the schema. */
  configValid: () => boolean;
  serving: () => boolean;
  metrics: NodeMetrics;
  metricsPublic: () => boolean;
  auth: AdminAuth;
  now?: () => number;
}

export interface ReadyReport {
  ready: boolean;
  checks: { storage: string; config: string; service: string };
}

/**
 * Whether storage accepts a write: a small probe file written and removed. Cached briefly so a
 * monitor polling /readyz (or anyone hammering it) costs one write per interval at most.
 */
export class StorageProbe {
  #root: string;
  #ttlMs: number;
  #now: () => number;
  #last: { at: number; result: string } | null = null;
  #pending: Promise<string> | null = null;

  constructor(root: string, ttlMs = 2_000, now: () => number = Date.now) {
    this.#root = root;
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  check(): Promise<string> {
    if (this.#last && this.#now() - this.#last.at < this.#ttlMs) return Promise.resolve(this.#last.result);
    this.#pending ??= this.#probe().then((result) => {
      this.#last = { at: this.#now(), result };
      this.#pending = null;
      return result;
    });
    return this.#pending;
  }

  async #probe(): Promise<string> {
    const file = path.join(this.#root, `.readyz-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await writeFile(file, 'ok');
      await unlink(file);
      return 'ok';
    } catch (error) {
      await unlink(file).catch(() => {});
      return `not writable: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
    }
  }
}

export function registerHealthRoutes(app: Hono<AppEnv>, deps: HealthDeps): void {
  const probe = new StorageProbe(deps.storageRoot, 2_000, deps.now);

  app.get('/healthz', (c) => {
    c.header('cache-control', 'no-store');
    return c.json({ status: 'ok' });
  });

  app.get('/readyz', async (c) => {
    const report = await readiness(deps, probe);
    c.header('cache-control', 'no-store');
    return c.json({ status: report.ready ? 'ready' : 'not ready', ...report.checks }, report.ready ? 200 : 503);
  });

  app.get('/metrics', async (c) => {
    if (!deps.metricsPublic()) {
      const verdict = deps.auth.check(c);
      if (!verdict.ok) return reject(c, verdict);
    }
    const { contentType, body } = await deps.metrics.render();
    c.header('cache-control', 'no-store');
    return c.body(body, 200, { 'content-type': contentType });
  });
}

async function readiness(deps: HealthDeps, probe: StorageProbe): Promise<ReadyReport> {
  const storage = await probe.check();
  const config = deps.configValid() ? 'ok' : 'invalid';
  // Stopped by the operator: downloads answer 503, so a balancer should send tablets elsewhere.
  const service = deps.serving() ? 'ok' : 'stopped';
  return { ready: storage === 'ok' && config === 'ok' && service === 'ok', checks: { storage, config, service } };
}
