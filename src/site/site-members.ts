/**
 * The nodes of this node's site, as every node of it can see them: the master's public node list
 * (addresses as registered), plus configured static peers where that list is not usable, plus this
 * node itself. Nodes that failed this node recently are left out for a while. Members are named by
 * address (host:port), the one name every node sees the same for every member.
 */
import type { SiteNode } from '../master/master-client.ts';
import { SITE_POLICY } from '../policy.ts';

export interface SiteMembersDeps {
  /** The master's node list (MasterClient.listNodes). */
  listNodes: () => Promise<SiteNode[]>;
  /** This node's registered address. */
  self: () => string;
  /** `peers.static`: host:port of siblings, used with (or without) the master's list. */
  staticPeers: () => readonly string[];
  /** How long a sibling that failed this node is left out. */
  failureHoldMs?: number;
  now?: () => number;
}

export interface SiteView {
  /** Members, this node included, failed ones excluded. */
  members: string[];
  /** When the master's list was last read successfully; null if never. */
  listedAt: number | null;
  /** The last failure to read the master's list, if the last attempt failed. */
  listError: string | null;
  /** The master's entries of the last successful read (for the panel's site view). */
  nodes: SiteNode[];
  /** Siblings left out after a failure, with the time they come back. */
  heldOut: Array<{ address: string; until: number }>;
}

export class SiteMembers {
  #deps: SiteMembersDeps;
  #now: () => number;
  #nodes: SiteNode[] = [];
  #listedAt: number | null = null;
  #attemptAt: number | null = null;
  #listError: string | null = null;
  #refreshing: Promise<void> | null = null;
  #failedUntil = new Map<string, number>();

  constructor(deps: SiteMembersDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * The members, with the master's list read again if the last attempt is older than `maxAgeMs`
   * (concurrent callers share one read). A failed read keeps the previous list: nodes must keep
   * agreeing on seeds while the master blinks.
   */
  async members(maxAgeMs: number): Promise<string[]> {
    // A read in progress is newer than any finished one: wait for it.
    if (this.#refreshing) await this.#refreshing;
    else if (this.#attemptAt === null || this.#now() - this.#attemptAt >= maxAgeMs) await this.refresh();
    return this.view().members;
  }

  refresh(): Promise<void> {
    this.#refreshing ??= (async () => {
      this.#attemptAt = this.#now();
      try {
        this.#nodes = await this.#deps.listNodes();
        this.#listedAt = this.#now();
        this.#listError = null;
      } catch (error) {
        this.#listError = (error as Error).message;
      }
    })().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** A sibling failed this node (unreachable, bad answer, stalled): leave it out for a while. */
  markFailed(address: string): void {
    if (address === this.#deps.self()) return;
    this.#failedUntil.set(address, this.#now() + (this.#deps.failureHoldMs ?? SITE_POLICY.failureHoldMs));
  }

  view(): SiteView {
    const now = this.#now();
    for (const [address, until] of this.#failedUntil) if (until <= now) this.#failedUntil.delete(address);
    const self = this.#deps.self();
    const all = new Set<string>([...this.#nodes.map((n) => n.address), ...this.#deps.staticPeers(), self]);
    return {
      members: [...all].filter((address) => address === self || !this.#failedUntil.has(address)).sort(),
      listedAt: this.#listedAt,
      listError: this.#listError,
      nodes: [...this.#nodes],
      heldOut: [...this.#failedUntil].map(([address, until]) => ({ address, until })),
    };
  }
}
