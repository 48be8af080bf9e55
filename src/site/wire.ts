/**
 * The site tier's wire, declared once: the headers and trailers nodes send each other, the
 * request to a sibling (paths from the one URL table, src/download-urls.ts), and the health
 * probe's transport. Both ends (site-tier.ts asking, seed-serving.ts answering) read them here.
 */
import { readBoundedText } from '../master/master-client.ts';
import { packageGet, type PackageGetResponse } from '../master/package-get.ts';
import { HEALTH_ROUTE } from '../download-urls.ts';
import type { HealthTransport } from './health.ts';

/** Sent by a node fetching from its seed: its node id. The seed never fetches from a peer for it. */
export const PEER_HEADER = 'x-edge-peer';
/** The build (buildId, zip-lead.ts) the asking node wants; the seed serves no other. */
export const BUILD_HEADER = 'x-edge-build';
/** The asking node's master token: without a build, the seed serves a package confirmed under it. */
export const TOKEN_HEADER = 'x-edge-token';
/** Builds the asking node must not get (comma-separated): what it held before a restart it saw. */
export const NOT_BUILD_HEADER = 'x-edge-not-build';
/**
 * On a seed's answer: the master's build its package stands for when the bytes are of another
 * build with the same documents (a preheat confirmed at the start). Without it, a sibling accepts
 * only the very build it asked for: never an older build, even one with the same documents.
 */
export const STANDS_FOR_HEADER = 'x-edge-stands-for';
/** Trailer of a seed's streamed answer to a sibling: the sha256 (hex) of the package it ended with. */
export const SHA256_TRAILER = 'x-edge-sha256';
/**
 * The seed's signature of the package it served (site-key.ts packageMessage): a header of a
 * complete package's answer (GET and HEAD), the trailer of a streamed one. A sibling promotes
 * nothing without it.
 */
export const SIGNATURE_HEADER = 'x-edge-signature';
/** The nonce a sibling sends with a build question (query parameter), signed back in the answer. */
export const NONCE_PARAM = 'nonce';

/** host:port, [v6]:port → the parts a socket wants. */
export function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(colon + 1)) };
}

export interface SiblingRequest {
  path: string;
  headers: Record<string, string>;
  signal: AbortSignal;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  method?: 'GET' | 'HEAD';
}

/** One request to a sibling (the same plain-socket GET as the master's package stream). */
export function siblingGet(address: string, request: SiblingRequest): Promise<PackageGetResponse> {
  const { host, port } = splitAddress(address);
  return packageGet({ host, port, ...request });
}

/** The health probe over HTTP: GET /api/edge/v1/health?nonce=…, answered `{ "proof": hex | null }`. */
export function httpHealthTransport(connectTimeoutMs: () => number): HealthTransport {
  return async (address, nonce, timeoutMs) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const response = await siblingGet(address, {
      path: `${HEALTH_ROUTE}?${NONCE_PARAM}=${nonce}`,
      headers: { accept: 'application/json' },
      signal,
      connectTimeoutMs: Math.min(timeoutMs, connectTimeoutMs()),
      headersTimeoutMs: timeoutMs,
    });
    const text = await readBoundedText(response.body, 1024);
    if (response.statusCode !== 200) throw new Error(`health answered HTTP ${response.statusCode}`);
    const body = JSON.parse(text) as { proof?: unknown };
    return { proof: typeof body.proof === 'string' ? body.proof : null };
  };
}
