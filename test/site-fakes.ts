/**
 * Siblings that are not edge nodes, for the site-tier tests: a member's signature made by hand,
 * and a fake peer answering its health probes (with the site key by default) and its download
 * requests as a test says.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { healthMessage, packageMessage, SiteKeyring } from '../src/site/site-key.ts';
import { buildIdentity } from '../src/store/zip-lead.ts';
import { sha256Hex, TEST_SITE_KEY } from './helpers.ts';

export const TEST_KEYRING = new SiteKeyring(TEST_SITE_KEY);

/** What a member with the site key signs for these bytes of a meeting's package, served from `address`. */
export function signPackage(meetingId: string, bytes: Buffer, address: string, keyring = TEST_KEYRING): string {
  const identity = buildIdentity(bytes.subarray(0, 64 * 1024), true);
  assert.ok(identity, 'a package with a lead');
  return keyring.sign(packageMessage({ meetingId, buildId: identity.buildId, standsFor: null, size: bytes.length, sha256: sha256Hex(bytes), address })) as string;
}

/**
 * A sibling that lies: answering what `answer` says, and its health probes as `proof` says (by
 * default with the site key: a member gone bad, whose bytes only their signature can catch).
 */
export async function startFakePeer(
  t: { after: (fn: () => Promise<void>) => void },
  answer: (req: IncomingMessage, res: ServerResponse, address: string) => void,
  proof: (nonce: string, address: string) => string | null = (nonce, address) => TEST_KEYRING.sign(healthMessage(nonce, address)),
): Promise<{ address: string }> {
  let address = '';
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/api/edge/v1/health')) {
      const nonce = new URL(req.url, 'http://x').searchParams.get('nonce') ?? '';
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, proof: proof(nonce, address) }));
      return;
    }
    answer(req, res, address);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { address };
}
