/**
 * The node's public URLs, declared once: the tablets' download URL on the master (which redirects
 * here) and the reference node's alias, and the site tier's routes between nodes (build identity,
 * health). The raw download listener, the Hono routes (preflight, and the odd spellings the raw
 * matcher leaves to Hono), the admin auth's public-path check and the site tier (src/site/), which
 * builds its requests to siblings from it, all read them from here. A leaf: imports nothing.
 */

/** Route patterns in Hono's syntax; `:id` is the meeting id. */
export const DOWNLOAD_ROUTES = ['/api/v1/meetings/:id/download-package', '/api/meetings/:id/download'] as const;

const ID = '([^/?]+)';
const ALTERNATIVES = DOWNLOAD_ROUTES.map((route) => route.replace(':id', ID)).join('|');
/** A request target as it arrives (may carry a query). */
const DOWNLOAD_URL = new RegExp(`^(?:${ALTERNATIVES})(?:\\?|$)`);
/** A path (no query), as routers see it. */
const DOWNLOAD_PATH = new RegExp(`^(?:${ALTERNATIVES.replaceAll(ID, '[^/]+')})$`);

/** The meeting id of a download URL (percent-decoded, not yet validated), or null for other URLs. */
export function downloadPathId(url: string): string | null {
  const match = DOWNLOAD_URL.exec(url);
  if (!match) return null;
  let raw = '';
  for (let i = 1; i < match.length; i++) {
    if (match[i] !== undefined) {
      raw = match[i] as string;
      break;
    }
  }
  try {
    return decodeURIComponent(raw);
  } catch {
    // Not decodable: handleDownload rejects it as an invalid id.
    return raw;
  }
}

/** Whether a path (no query) is a download URL. */
export function isDownloadPath(path: string): boolean {
  return DOWNLOAD_PATH.test(path);
}

/** The path of a meeting's package on any node (the master's own download URL). */
export function packagePath(meetingId: string): string {
  return (DOWNLOAD_ROUTES[0] as string).replace(':id', encodeURIComponent(meetingId));
}

/**
 * The build-identity route of the site tier (site/seed-serving.ts): a sibling node asks which
 * build of a meeting's package is current. Public like the downloads (nodes carry no admin token).
 */
export const BUILD_ROUTE = '/api/edge/v1/meetings/:id/build';
const BUILD_URL = new RegExp(`^${BUILD_ROUTE.replace(':id', ID)}(?:\\?|$)`);
const BUILD_PATH = new RegExp(`^${BUILD_ROUTE.replace(':id', '[^/]+')}$`);

/** The meeting id of a build-identity URL (percent-decoded, not yet validated), or null. */
export function buildPathId(url: string): string | null {
  const match = BUILD_URL.exec(url);
  if (!match) return null;
  try {
    return decodeURIComponent(match[1] as string);
  } catch {
    return match[1] as string;
  }
}

/** The path of a meeting's build-identity answer on a sibling. */
export function buildPath(meetingId: string): string {
  return BUILD_ROUTE.replace(':id', encodeURIComponent(meetingId));
}

/**
 * The site tier's health route: a sibling's probe (with a nonce) answered with the proof that this
 * node holds the site key (site/site-key.ts). Public like the build route: the proof is the auth.
 */
export const HEALTH_ROUTE = '/api/edge/v1/health';

/** Whether a request target (may carry a query) is the health route. */
export function isHealthUrl(url: string): boolean {
  return url === HEALTH_ROUTE || url.startsWith(`${HEALTH_ROUTE}?`);
}

/** Whether a path (no query) is public: the downloads and the site tier's routes; everything else under /api/ needs the admin token. */
export function isPublicPath(path: string): boolean {
  return DOWNLOAD_PATH.test(path) || BUILD_PATH.test(path) || path === HEALTH_ROUTE;
}

/** Downloads may be fetched cross-origin (tablet web apps); admin routes may not. */
export const DOWNLOAD_CORS: Record<string, string> = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Content-Disposition, Retry-After',
};

/** The answer to a CORS preflight of a download URL. */
export const DOWNLOAD_PREFLIGHT: Record<string, string> = {
  ...DOWNLOAD_CORS,
  'access-control-allow-methods': 'GET, HEAD, OPTIONS',
  'access-control-allow-headers': 'Range, If-Range, If-None-Match, If-Modified-Since',
  'access-control-max-age': '600',
};
