/**
 * Who of the site is alive and of the site: a health probe per member, as Varnish's `.probe`
 * (HAProxy's `check inter rise fall` is the same rule). Every interval each member is asked its
 * health with a fresh nonce; an answer within the timeout that proves the site key (an HMAC of the
 * nonce and the member's own address, site-key.ts) is a good probe. Over the last `window` probes,
 * a member is healthy while at least `threshold` were good: sick after 3 misses of the last 5,
 * healthy again after 3 answers. A member that answers without the proof is "not of this site":
 * never a seed, listed with its address in the site view, logged once at WARN.
 *
 * Clock and transport are injected: the unit tests drive probes one by one, with no timer.
 */
import type { Logger } from '../log/logger.ts';
import { SITE_POLICY } from '../policy.ts';
import { healthMessage, newNonce, type SiteKeyring } from './site-key.ts';

/** The probe's numbers (policy.ts SITE_POLICY.health by default). */
export interface HealthPolicy {
  intervalMs: number;
  timeoutMs: number;
  /** Probes remembered per member. */
  window: number;
  /** Good probes of the window needed to be healthy. */
  threshold: number;
}

export const HEALTH_POLICY: HealthPolicy = SITE_POLICY.health;

/**
 * The last `window` probes of one member (true: answered). Starts one good probe short of healthy
 * (Varnish's `.initial` = threshold − 1): a member that proves itself once is a member at once,
 * and one that never answers is never picked.
 */
export class HealthWindow {
  readonly #policy: Pick<HealthPolicy, 'window' | 'threshold'>;
  #results: boolean[];

  constructor(policy: Pick<HealthPolicy, 'window' | 'threshold'> = HEALTH_POLICY) {
    this.#policy = policy;
    this.#results = Array.from({ length: policy.window }, (_, i) => i >= policy.window - (policy.threshold - 1));
  }

  record(answered: boolean): void {
    this.#results.push(answered);
    if (this.#results.length > this.#policy.window) this.#results.shift();
  }

  /** Every remembered probe becomes a miss (a seed found dead mid-stream): healthy again only after `threshold` answers. */
  fail(): void {
    this.#results = this.#results.map(() => false);
  }

  get good(): number {
    return this.#results.filter(Boolean).length;
  }

  get healthy(): boolean {
    return this.good >= this.#policy.threshold;
  }
}

/** What a member answered to one probe: its proof (null when it sent none). Rejects when it did not answer in time. */
export type HealthTransport = (address: string, nonce: string, timeoutMs: number) => Promise<{ proof: string | null }>;

export type KeyProof = 'unknown' | 'proven' | 'refused';

export interface MemberHealth {
  address: string;
  healthy: boolean;
  /** Good probes of the window. */
  good: number;
  /** Whether it proved the site key: 'refused' is "not of this site". */
  proof: KeyProof;
  lastAnswerAt: number | null;
  lastProbeAt: number | null;
  lastError: string | null;
}

export interface SiteHealthDeps {
  transport: HealthTransport;
  keyring: () => SiteKeyring;
  /** The other members to probe (addresses). */
  members: () => readonly string[];
  logger: Logger;
  policy?: HealthPolicy;
  now?: () => number;
  nonce?: () => string;
}

interface MemberState {
  window: HealthWindow;
  proof: KeyProof;
  lastAnswerAt: number | null;
  lastProbeAt: number | null;
  lastError: string | null;
  /** The probe in flight: a second ask joins it. */
  inFlight: Promise<boolean> | null;
}

export class SiteHealth {
  readonly #deps: SiteHealthDeps;
  readonly #policy: HealthPolicy;
  readonly #now: () => number;
  readonly #members = new Map<string, MemberState>();
  #timer: NodeJS.Timeout | null = null;

  constructor(deps: SiteHealthDeps) {
    this.#deps = deps;
    this.#policy = deps.policy ?? HEALTH_POLICY;
    this.#now = deps.now ?? Date.now;
  }

  get policy(): HealthPolicy {
    return this.#policy;
  }

  /** Probes every member each interval until stop(). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.probeAll(), this.#policy.intervalMs);
    this.#timer.unref();
    void this.probeAll();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** One probe of every member (members gone from the list are forgotten). */
  async probeAll(): Promise<void> {
    const members = new Set(this.#deps.members());
    for (const address of this.#members.keys()) if (!members.has(address)) this.#members.delete(address);
    await Promise.all([...members].map((address) => this.probe(address)));
  }

  /**
   * Probes the members never probed yet (just read from the master's list), and waits: a seed is
   * then chosen from a view where a new member is already proven, as its siblings see it.
   */
  async probeNew(): Promise<void> {
    const waits: Array<Promise<boolean>> = [];
    for (const address of this.#deps.members()) {
      const state = this.#members.get(address);
      // Never probed: probe now. Its first probe still running (started by the poll): wait for it.
      // One that was probed and never answered is not waited on again (a dead static peer would
      // otherwise delay every download by the probe's timeout).
      if (!state) waits.push(this.probe(address));
      else if (state.proof === 'unknown' && state.inFlight && state.lastAnswerAt === null) waits.push(state.inFlight);
    }
    await Promise.all(waits);
  }

  /**
   * Asks one member's health now (joining a probe in flight); resolves whether it answered with
   * the proof. Used by a sibling whose seed went silent mid-stream.
   */
  probe(address: string): Promise<boolean> {
    const state = this.#state(address);
    state.inFlight ??= this.#ask(address, state).finally(() => {
      state.inFlight = null;
    });
    return state.inFlight;
  }

  async #ask(address: string, state: MemberState): Promise<boolean> {
    const nonce = (this.#deps.nonce ?? newNonce)();
    state.lastProbeAt = this.#now();
    let proof: string | null;
    try {
      proof = (await this.#deps.transport(address, nonce, this.#policy.timeoutMs)).proof;
    } catch (error) {
      state.window.record(false);
      state.lastError = (error as Error).message;
      return false;
    }
    state.lastAnswerAt = this.#now();
    const proven = this.#deps.keyring().verify(healthMessage(nonce, address), proof);
    if (!proven) {
      if (state.proof !== 'refused') this.#deps.logger.warn(`site: ${address} is not of this site (it cannot prove the site key); never fetching from it`);
      state.proof = 'refused';
      state.lastError = proof === null ? 'answered without a proof of the site key' : 'answered with a wrong proof of the site key';
      state.window.record(false);
      return false;
    }
    if (state.proof === 'refused') this.#deps.logger.info(`site: ${address} now proves the site key`);
    state.proof = 'proven';
    state.lastError = null;
    state.window.record(true);
    return true;
  }

  /** A proven member whose window says healthy: it may be a seed. */
  usable(address: string): boolean {
    const state = this.#members.get(address);
    return state !== undefined && state.proof === 'proven' && state.window.healthy;
  }

  /** The member stopped answering mid-stream: sick at once, healthy again after `threshold` answers. */
  markSick(address: string, reason: string): void {
    const state = this.#state(address);
    state.window.fail();
    state.lastError = reason;
  }

  view(): MemberHealth[] {
    return [...this.#members].map(([address, s]) => ({
      address,
      healthy: s.proof === 'proven' && s.window.healthy,
      good: s.window.good,
      proof: s.proof,
      lastAnswerAt: s.lastAnswerAt,
      lastProbeAt: s.lastProbeAt,
      lastError: s.lastError,
    }));
  }

  #state(address: string): MemberState {
    let state = this.#members.get(address);
    if (!state) {
      state = { window: new HealthWindow(this.#policy), proof: 'unknown', lastAnswerAt: null, lastProbeAt: null, lastError: null, inFlight: null };
      this.#members.set(address, state);
    }
    return state;
  }
}
