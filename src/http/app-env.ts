import type { HttpBindings } from '@hono/node-server';

/** The Hono environment of the node's app: handlers reach the raw Node request and response. */
export type AppEnv = { Bindings: HttpBindings };
