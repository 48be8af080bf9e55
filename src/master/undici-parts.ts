/**
 * The two parts of undici the master client uses, imported from their own modules rather than
 * from undici's index: the index loads every part of undici (fetch, WebSocket, EventSource, the
 * caches, the mocks, the proxy agents), and the node paid for each in heap and RSS for as long as
 * it ran (bench/README.md, "Where the memory goes"). undici 7 declares no `exports` map, so these
 * paths are open to Node's resolver and to the bundler; their types (undici-modules.d.ts) are the
 * index's own, and undici-parts.test.ts checks the parts against the index's.
 */
import AgentClass from 'undici/lib/dispatcher/agent.js';
import requestOn from 'undici/lib/api/api-request.js';
import type { Dispatcher } from 'undici';

export const Agent = AgentClass;
export type Agent = AgentClass;

/** `dispatcher.request(options)`, the method undici's index attaches to Dispatcher.prototype. */
export function requestThrough(dispatcher: Dispatcher, options: Dispatcher.RequestOptions): Promise<Dispatcher.ResponseData> {
  return requestOn.call(dispatcher, options);
}
