// The admin API client. The token travels only in the Authorization header (never in a URL) and
// is kept in sessionStorage: gone when the browser session ends.
const TOKEN_KEY = 'meeting-edge.adminToken';

export class ApiError extends Error {
  constructor(status, data, message) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

export class Api {
  constructor() {
    this.onUnauthorized = () => {};
    try {
      this.token = sessionStorage.getItem(TOKEN_KEY);
    } catch {
      this.token = null;
    }
  }

  setToken(token) {
    this.token = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Session storage disabled: the token lives until the page is closed.
    }
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token ?? ''}`, ...extra };
  }

  /** JSON request; resolves with the parsed body, throws ApiError on a non-2xx answer. */
  async request(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: this.headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (error) {
      throw new ApiError(0, null, error.message);
    }
    const data = await response.json().catch(() => null);
    if (response.status === 401) this.onUnauthorized();
    if (!response.ok) {
      const error = new ApiError(response.status, data, data?.error ?? `HTTP ${response.status}`);
      error.retryAfter = Number(response.headers.get('retry-after')) || null;
      throw error;
    }
    return data;
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body) {
    return this.request('POST', path, body ?? {});
  }

  async download(path) {
    const response = await fetch(path, { headers: this.headers(), cache: 'no-store' });
    if (response.status === 401) this.onUnauthorized();
    if (!response.ok) throw new ApiError(response.status, null, `HTTP ${response.status}`);
    const disposition = response.headers.get('content-disposition') ?? '';
    const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? 'download.bin';
    return { blob: await response.blob(), name };
  }

  /**
   * Server-Sent Events over fetch(): EventSource cannot send an Authorization header, and the token
   * must not go in the URL. Reconnects with the server's retry delay until `signal` aborts.
   */
  async streamEvents(onEvent, onState, signal) {
    let retryMs = 3000;
    while (!signal.aborted) {
      try {
        const response = await fetch('/api/events', { headers: this.headers({ Accept: 'text/event-stream' }), cache: 'no-store', signal });
        if (response.status === 401) {
          this.onUnauthorized();
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        onState('open');
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const parsed = parseFrame(frame);
            if (parsed.retry) retryMs = parsed.retry;
            if (parsed.data !== null) {
              let data;
              try {
                data = JSON.parse(parsed.data);
              } catch {
                data = parsed.data;
              }
              onEvent(parsed.event, data);
            }
          }
        }
      } catch (error) {
        if (signal.aborted) return;
      }
      onState('closed');
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, retryMs);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        }, { once: true });
      });
    }
  }
}

function parseFrame(frame) {
  let event = 'message';
  let data = null;
  let retry = null;
  for (const line of frame.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data = data === null ? value : `${data}\n${value}`;
    else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
  }
  return { event, data, retry };
}
