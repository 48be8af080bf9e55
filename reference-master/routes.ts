// Which route a path is, and which methods it allows (what FastAPI's router would decide).

export type RouteName =
  | 'root'
  | 'register'
  | 'unregister'
  | 'heartbeat'
  | 'list'
  | 'available'
  | 'status'
  | 'tabletStatus'
  | 'meetingList'
  | 'package'
  | 'tabletPackage'
  | 'nodesInfo'
  | 'admin'
  | 'notFound';

export interface RouteMatch {
  route: RouteName;
  allowed: readonly string[];
  meetingId?: string;
}

const GET = ['GET', 'HEAD'] as const;
const GET_ONLY = ['GET'] as const;
const POST = ['POST'] as const;
const STATIC_ROUTES: Record<string, RouteMatch> = {
  '/': { route: 'root', allowed: GET },
  '/api/v1/nodes/register': { route: 'register', allowed: POST },
  '/api/v1/nodes/unregister': { route: 'unregister', allowed: POST },
  '/api/v1/nodes/heartbeat': { route: 'heartbeat', allowed: POST },
  '/api/v1/nodes/list': { route: 'list', allowed: GET },
  '/api/v1/nodes/available': { route: 'available', allowed: GET },
  '/api/v1/meetings/status/node': { route: 'status', allowed: GET },
  '/api/v1/meetings/status/token': { route: 'tabletStatus', allowed: GET },
  // Declared with its trailing slash: without it, FastAPI redirects (307) here.
  '/api/v1/meetings/': { route: 'meetingList', allowed: GET },
};
const MEETING_ROUTE = /^\/api\/v1\/meetings\/([^/]+)\/(download-package-direct|download-package|download-nodes-info)$/;
const MEETING_ROUTE_NAMES: Record<string, RouteName> = {
  'download-package-direct': 'package',
  'download-package': 'tabletPackage',
  'download-nodes-info': 'nodesInfo',
};

export function matchRoute(pathname: string): RouteMatch | null {
  const fixed = STATIC_ROUTES[pathname];
  if (fixed) return fixed;
  if (pathname.startsWith('/admin/')) return { route: 'admin', allowed: ['GET', 'POST'] };
  const meetingRoute = MEETING_ROUTE.exec(pathname);
  if (meetingRoute) {
    const route = MEETING_ROUTE_NAMES[meetingRoute[2] ?? ''] ?? 'notFound';
    // HEAD is refused on the package routes (observed 405), unlike the other GET routes.
    const allowed = route === 'nodesInfo' ? GET : GET_ONLY;
    return { route, allowed, meetingId: safeDecode(meetingRoute[1] ?? '') };
  }
  return null;
}

/** FastAPI's redirect_slashes: the path with its trailing slash removed or added, if that matches. */
export function slashRedirect(pathname: string): string | null {
  if (pathname.length > 1 && pathname.endsWith('/')) {
    const without = pathname.replace(/\/+$/, '');
    if (without && matchRoute(without)) return without;
    return null;
  }
  const withSlash = `${pathname}/`;
  return matchRoute(withSlash) && !withSlash.startsWith('/admin/') ? withSlash : null;
}

export function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
