import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from '../../log/logger.ts';
import type { AppEnv } from '../app-env.ts';

export interface AdminAuthOptions {
  /** The token in force now (config, env or generated); read per request so a change applies at once. */
  token: () => string;
  logger: Logger;
  /** Wrong tokens allowed per client address per window before they are answered 429. */
  maxFailures?: number;
  windowMs?: number;
  now?: () => number;
}

export type AuthVerdict = { ok: true } | { ok: false; status: 401 | 429; body: { error: string }; retryAfterSeconds?: number };

interface FailureWindow {
  count: number;
  resetAt: number;
  /** The block was logged already (one line per blocked window, not one per request). */
  reported: boolean;
}

const QUERY_TOKEN = /(^|[?&])(token|access_token|admin_?token|auth|authorization)=/i;
/** Beyond this many tracked addresses, expired windows are dropped (bounded memory under a scan). */
const MAX_TRACKED = 10_000;

/**
 * Bearer-token check for the admin API. Compares SHA-256 digests with timingSafeEqual (equal
 * lengths by construction, so neither the token's length nor its prefix leaks through timing).
 * Wrong tokens are counted per client address; past the limit the address's wrong tokens get 429
 * (with Retry-After) instead of 401 for the rest of the window. The right token is always accepted
 * and a missing token is a plain 401 that is not counted, so neither a probe without a token nor a
 * neighbour's guesses behind the same NAT can lock the operator out. The token is never logged,
 * and never accepted from the URL (URLs end up in proxy logs and browser history).
 */
export class AdminAuth {
  #options: Required<AdminAuthOptions>;
  #failures = new Map<string, FailureWindow>();
  /** Digest of the token in force, recomputed only when the token changes (one hash per request, not two). */
  #expected: { token: string; digest: Buffer } | null = null;

  constructor(options: AdminAuthOptions) {
    this.#options = { maxFailures: 10, windowMs: 60_000, now: Date.now, ...options };
  }

  check(c: Context<AppEnv>): AuthVerdict {
    const now = this.#options.now();
    const client = clientAddress(c);
    const presented = bearerToken(c.req.header('authorization'));
    // The right token always passes: a neighbour behind the same NAT guessing (or a probe without
    // a token) must not lock the operator out.
    if (presented !== null && this.#matches(presented)) return { ok: true };

    const inUrl = QUERY_TOKEN.test(new URL(c.req.url).search);
    if (presented === null) {
      // No token is not a guess: a plain 401, not counted (a panel opened before signing in, a probe).
      this.#options.logger.warn(`admin API: rejected ${c.req.method} ${c.req.path} from ${client}: ${inUrl ? 'token in the URL (not accepted)' : 'no token'}`);
      return {
        ok: false,
        status: 401,
        body: {
          error: inUrl
            ? 'send the admin token in the Authorization header (Bearer); tokens in the URL are not accepted'
            : 'admin token required (Authorization: Bearer <token>)',
        },
      };
    }

    const window = this.#failures.get(client);
    if (window && window.resetAt <= now) this.#failures.delete(client);
    const current = this.#failures.get(client);
    if (current && current.count >= this.#options.maxFailures) {
      const retryAfterSeconds = Math.max(1, Math.ceil((current.resetAt - now) / 1000));
      if (!current.reported) {
        current.reported = true;
        this.#options.logger.warn(`admin API: ${client} blocked for ${retryAfterSeconds} s after ${current.count} failed attempts`);
      }
      return { ok: false, status: 429, body: { error: `too many wrong tokens; retry in ${retryAfterSeconds} s` }, retryAfterSeconds };
    }
    this.#recordFailure(client, now);
    this.#options.logger.warn(`admin API: rejected ${c.req.method} ${c.req.path} from ${client}: wrong token`);
    return { ok: false, status: 401, body: { error: 'invalid admin token' } };
  }

  /** Middleware form of check(). */
  middleware(skip: (path: string) => boolean = () => false): MiddlewareHandler<AppEnv> {
    return async (c, next) => {
      if (skip(c.req.path)) return next();
      const verdict = this.check(c);
      if (!verdict.ok) return reject(c, verdict);
      return next();
    };
  }

  #matches(presented: string): boolean {
    const token = this.#options.token();
    if (token === '') return false;
    if (this.#expected?.token !== token) this.#expected = { token, digest: sha256(token) };
    return timingSafeEqual(sha256(presented), this.#expected.digest);
  }

  #recordFailure(client: string, now: number): void {
    if (this.#failures.size >= MAX_TRACKED) {
      for (const [key, window] of this.#failures) if (window.resetAt <= now) this.#failures.delete(key);
      // Still full of live windows: forget the oldest rather than grow without bound.
      if (this.#failures.size >= MAX_TRACKED) {
        const oldest = this.#failures.keys().next();
        if (!oldest.done) this.#failures.delete(oldest.value);
      }
    }
    const window = this.#failures.get(client);
    if (window) window.count++;
    else this.#failures.set(client, { count: 1, resetAt: now + this.#options.windowMs, reported: false });
  }
}

export function reject(c: Context<AppEnv>, verdict: Extract<AuthVerdict, { ok: false }>): Response {
  c.header('cache-control', 'no-store');
  if (verdict.status === 401) c.header('www-authenticate', 'Bearer realm="meeting-edge admin"');
  if (verdict.retryAfterSeconds !== undefined) c.header('retry-after', String(verdict.retryAfterSeconds));
  return c.json(verdict.body, verdict.status);
}

function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1] ?? null;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The TCP peer: X-Forwarded-For is not trusted (anyone can send it to dodge the limit). */
function clientAddress(c: Context<AppEnv>): string {
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
}
