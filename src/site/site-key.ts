/**
 * The site key: what makes a node a member of its site (issue 18), as Consul's gossip key does.
 * 32 random bytes, base64, the same on every node of the site. The current key signs; up to three
 * previous keys are still accepted (never used to sign), so a site rotates its key node by node:
 * every node gets [new, old] as key + previousKeys, then [new] alone, with no moment where two
 * nodes cannot check each other.
 *
 * Three things are signed (HMAC-SHA256), each message starting with its purpose so one can never
 * stand for another, and each naming the signer's own registered address, so a rogue relaying a
 * real member's answer from its own address is still caught:
 *   - the health proof: a sibling's nonce;
 *   - a package served to a sibling: meeting, build, the build it stands for, byte count, sha256;
 *   - a build answer: meeting, build, documents, the asker's nonce (an old answer is not replayed).
 * Verification compares with crypto.timingSafeEqual. The key itself is never logged or shown.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { SITE_KEY_PATTERN, SITE_KEY_RULE } from '../config/schema.ts';

/** Bytes of a site key. */
export const SITE_KEY_BYTES = 32;
const SITE_KEY_RE = new RegExp(SITE_KEY_PATTERN);
/** Previous keys still accepted during a rotation. */
export const MAX_PREVIOUS_KEYS = 3;

/** A fresh site key (`node start.js --new-site-key`). */
export function newSiteKey(): string {
  return randomBytes(SITE_KEY_BYTES).toString('base64');
}

/** Why a key's text is not a site key, or null when it is one. */
export function siteKeyProblem(text: string): string | null {
  // The pattern admits exactly the canonical base64 of 32 bytes (the last character's spare bits zero).
  return SITE_KEY_RE.test(text) ? null : SITE_KEY_RULE;
}

/** A nonce for a challenge: 16 random bytes, hex. */
export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

/** What a nonce from the network must look like before it is signed (bounded, no separators). */
export function isNonce(text: string | null | undefined): text is string {
  return typeof text === 'string' && /^[0-9a-f]{16,64}$/.test(text);
}

export function healthMessage(nonce: string, address: string): string {
  return `edge-health\n${nonce}\n${address}`;
}

/** What a seed vouches for when it serves a package to a sibling. */
export interface PackageClaim {
  meetingId: string;
  buildId: string;
  /** The master's build this package stands for (a confirmed preheat), or null. */
  standsFor: string | null;
  size: number;
  sha256: string;
  /** The seed's registered address. */
  address: string;
}

export function packageMessage(claim: PackageClaim): string {
  return `edge-package\n${claim.meetingId}\n${claim.buildId}\n${claim.standsFor ?? ''}\n${claim.size}\n${claim.sha256}\n${claim.address}`;
}

/** What a seed vouches for when it answers a sibling's build question. */
export interface BuildClaim {
  meetingId: string;
  buildId: string;
  documentsId: string | null;
  /** The asker's nonce. */
  nonce: string;
  address: string;
}

export function buildMessage(claim: BuildClaim): string {
  return `edge-build\n${claim.meetingId}\n${claim.buildId}\n${claim.documentsId ?? ''}\n${claim.nonce}\n${claim.address}`;
}

/**
 * The keys of this node: one signs, all are accepted. Built from the config (and EDGE_SITE_KEY)
 * each time they change; holds no other state.
 */
export class SiteKeyring {
  readonly #signing: Buffer | null;
  readonly #accepted: readonly Buffer[];

  /** `key`: the current key (null: no key, the tier is off); `previous`: still accepted. Throws for a malformed key. */
  constructor(key: string | null, previous: readonly string[] = []) {
    for (const text of key === null ? previous : [key, ...previous]) {
      const problem = siteKeyProblem(text);
      if (problem) throw new RangeError(`site key ${problem}`);
    }
    this.#signing = key === null ? null : Buffer.from(key, 'base64');
    // Without a current key nothing is accepted either: a node that cannot sign is not a member.
    this.#accepted = key === null ? [] : [key, ...previous.slice(0, MAX_PREVIOUS_KEYS)].map((text) => Buffer.from(text, 'base64'));
  }

  /** Whether this node has a key (the tier runs only then). */
  get enabled(): boolean {
    return this.#signing !== null;
  }

  /** HMAC-SHA256 of the message with the current key, hex; null without a key. */
  sign(message: string): string | null {
    return this.#signing === null ? null : hmac(this.#signing, message);
  }

  /** Whether `signature` is the message's HMAC under any accepted key. */
  verify(message: string, signature: string | null | undefined): boolean {
    if (typeof signature !== 'string' || !/^[0-9a-f]{64}$/.test(signature)) return false;
    const given = Buffer.from(signature, 'hex');
    let ok = false;
    // Every key is tried (no early exit): the time taken says nothing about which one matched.
    for (const key of this.#accepted) ok = timingSafeEqual(Buffer.from(hmac(key, message), 'hex'), given) || ok;
    return ok;
  }
}

function hmac(key: Buffer, message: string): string {
  return createHmac('sha256', key).update(message).digest('hex');
}
