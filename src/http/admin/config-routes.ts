import type { Context, Hono } from 'hono';
import { describeFieldErrors } from '../../config/validate.ts';
import type { NodeConfig } from '../../config/schema.ts';
import type { ConfigApplyResult } from '../../node-events.ts';
import type { AppEnv } from '../app-env.ts';

export interface ConfigRoutesDeps {
  current: () => NodeConfig;
  schema: object;
  /** Deep-merges, validates, saves and applies (resolves once the live apply is done). */
  update: (patch: Record<string, unknown>) => Promise<ConfigApplyResult>;
}

/** What GET /api/config shows instead of a secret; sent back unchanged, it leaves the secret alone. */
export const REDACTED = '<redacted>';
const SECRET_KEYS = ['adminToken'] as const;

export function redactConfig(config: NodeConfig): Record<string, unknown> {
  const copy = structuredClone(config) as unknown as Record<string, unknown>;
  for (const key of SECRET_KEYS) if (typeof copy[key] === 'string') copy[key] = REDACTED;
  return copy;
}

type JsonBody = { ok: true; value: unknown } | { ok: false; response: Response };

/** Far deeper than any setting; deeper bodies would only exercise the recursive merge and diff. */
const MAX_DEPTH = 32;

/** The body as JSON, or the 400 to send. The size limit (413) is enforced before this runs. */
export async function readJson(c: Context<AppEnv>): Promise<JsonBody> {
  const text = await c.req.text();
  if (text.trim() === '') return { ok: false, response: badRequest(c, 'request body is empty: send a JSON object', {}) };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, response: badRequest(c, `request body is not valid JSON: ${(error as Error).message}`, {}) };
  }
  const problem = shapeProblem(value);
  if (problem) return { ok: false, response: badRequest(c, `${problem.path || 'request body'} ${problem.message}`, { [problem.path]: problem.message }) };
  return { ok: true, value };
}

/**
 * What JSON allows but no setting can be: nesting beyond MAX_DEPTH, and numbers that parsed to
 * ±Infinity (1e999), which the file cannot hold. Iterative, so a hostile depth cannot overflow the stack.
 */
export function shapeProblem(value: unknown): { path: string; message: string } | null {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [{ value, path: '', depth: 0 }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (typeof item.value === 'number' && !Number.isFinite(item.value)) return { path: item.path, message: 'must be a finite number' };
    if (typeof item.value !== 'object' || item.value === null) continue;
    if (item.depth >= MAX_DEPTH) return { path: '', message: `nested deeper than ${MAX_DEPTH} levels` };
    for (const [key, child] of Object.entries(item.value)) {
      stack.push({ value: child, path: item.path ? `${item.path}.${key}` : key, depth: item.depth + 1 });
    }
  }
  return null;
}

export function badRequest(c: Context<AppEnv>, error: string, fields: Record<string, string>): Response {
  return c.json({ error, fields }, 400);
}

export function registerConfigRoutes(app: Hono<AppEnv>, deps: ConfigRoutesDeps): void {
  app.get('/api/config', (c) => c.json(redactConfig(deps.current())));

  app.get('/api/config/schema', (c) => c.json(deps.schema));

  app.post('/api/config', async (c) => {
    const body = await readJson(c);
    if (!body.ok) return body.response;
    if (typeof body.value !== 'object' || body.value === null || Array.isArray(body.value)) {
      return badRequest(c, 'the configuration must be a JSON object', { '': 'must be a JSON object' });
    }
    const patch = { ...(body.value as Record<string, unknown>) };
    // A config read from GET and posted back whole carries the placeholder: keep the secret.
    for (const key of SECRET_KEYS) if (patch[key] === REDACTED) delete patch[key];
    if ('adminToken' in patch && patch.adminToken === null) {
      return badRequest(c, 'adminToken cannot be cleared through the API', {
        adminToken: 'cannot be cleared through the API; set a new token of at least 16 characters',
      });
    }
    const result = await deps.update(patch);
    if (!result.ok) return badRequest(c, `invalid configuration: ${describeFieldErrors(result.fields)}`, result.fields);
    return c.json({
      status: 'success',
      message:
        result.changed.length === 0
          ? 'nothing changed'
          : result.overridden.length > 0
            ? `configuration saved; ${result.overridden.map((o) => `${o.key} is set by ${o.option} at start, which wins over the file while it is given`).join('; ')}`
            : result.restartRequired.length > 0
              ? `configuration saved; ${result.restartRequired.join(', ')} take${result.restartRequired.length === 1 ? 's' : ''} effect after a restart`
              : 'configuration saved and applied',
      changed: result.changed,
      restart_required: result.restartRequired,
      overridden_by_start_options: Object.fromEntries(result.overridden.map((o) => [o.key, o.option])),
      config: redactConfig(result.config),
    });
  });

  // The reference panel's legacy route: body is a bare integer or {"interval": n}.
  app.post('/api/config/heartbeat', async (c) => {
    const text = (await c.req.text()).trim();
    const rangeMessage = 'must be an integer from 10 to 300 (seconds)';
    let interval: unknown;
    if (/^-?\d+$/.test(text)) {
      interval = Number(text);
    } else {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return badRequest(c, `interval ${rangeMessage}: send an integer or {"interval": n}`, { interval: rangeMessage });
      }
      if (shapeProblem(parsed)) return badRequest(c, `interval ${rangeMessage}`, { interval: rangeMessage });
      interval = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>).interval : parsed;
    }
    if (typeof interval !== 'number' || !Number.isInteger(interval)) {
      return badRequest(c, `interval ${rangeMessage}`, { interval: rangeMessage });
    }
    const result = await deps.update({ heartbeat: { interval } });
    if (!result.ok) {
      const message = result.fields['heartbeat.interval'] ?? describeFieldErrors(result.fields);
      return badRequest(c, `interval ${message}`, { interval: message });
    }
    return c.json({ status: 'success', message: `heartbeat interval set to ${interval} s`, interval });
  });
}
