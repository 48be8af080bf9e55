/**
 * The site tier as the node runs it: its keyring from the config (EDGE_SITE_KEY wins over
 * peers.key), its members from the master's node list and peers.static, their health probed only
 * while the tier is on.
 */
import type { NodeConfig } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import type { SiteNode } from '../master/master-client.ts';
import { SiteHealth } from '../site/health.ts';
import { SiteKeyring } from '../site/site-key.ts';
import { SeedSigner } from '../site/seed-serving.ts';
import { SiteMembers } from '../site/site-members.ts';
import { SiteTier } from '../site/site-tier.ts';
import { httpHealthTransport } from '../site/wire.ts';
import type { EdgeNodeOptions } from './edge-node-options.ts';

export interface SiteWiring {
  config: () => NodeConfig;
  /** EDGE_SITE_KEY, checked before the node starts. */
  environmentKey: string | undefined;
  listNodes: () => Promise<SiteNode[]>;
  /** This node's registered address. */
  self: () => string;
  logger: Logger;
  options: EdgeNodeOptions['site'];
}

/** The tier (the asking side) and the seed's signer (the serving side), with one keyring. */
export function createSiteTier(wiring: SiteWiring): { tier: SiteTier; signer: SeedSigner } {
  const { config, self, logger } = wiring;
  const keyring = siteKeyring(() => wiring.environmentKey ?? config().peers.key, () => config().peers.previousKeys);
  const members = new SiteMembers({ listNodes: wiring.listNodes, self, staticPeers: () => config().peers.static });
  const { health: healthPolicy, ...siteOptions } = wiring.options ?? {};
  const site: SiteTier = new SiteTier({
    members,
    health: new SiteHealth({
      transport: httpHealthTransport(() => config().peers.connectTimeout * 1000),
      keyring,
      // Only while the tier is on; this node is not probed by itself.
      members: () => (site.enabled ? members.view().members.filter((m) => m !== self()) : []),
      logger,
      policy: healthPolicy,
    }),
    keyring,
    self,
    nodeId: () => config().nodeId ?? 'node-unknown',
    settings: () => {
      const { enabled, connectTimeout, stallTimeout } = config().peers;
      return { enabled, connectTimeoutMs: connectTimeout * 1000, stallTimeoutMs: stallTimeout * 1000 };
    },
    logger,
    ...siteOptions,
  });
  return { tier: site, signer: new SeedSigner(keyring, self) };
}

/**
 * The site's keys in force, rebuilt only when the key (EDGE_SITE_KEY, else peers.key) or the
 * previous keys change; a key the schema let through but that is not one (never expected) turns
 * the tier off rather than the node.
 */
function siteKeyring(key: () => string | null, previous: () => readonly string[]): () => SiteKeyring {
  let built: { text: string; keyring: SiteKeyring } | null = null;
  return () => {
    const text = `${key() ?? ''} ${previous().join(' ')}`;
    if (built?.text !== text) {
      let keyring: SiteKeyring;
      try {
        keyring = new SiteKeyring(key(), previous());
      } catch {
        keyring = new SiteKeyring(null);
      }
      built = { text, keyring };
    }
    return built.keyring;
  };
}
