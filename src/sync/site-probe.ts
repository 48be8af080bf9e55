/**
 * Which build is current, the site's way: the seed probes the master, a sibling asks the seed
 * (site/site-tier.ts askSeed, a signed answer) and probes the master itself only when the seed
 * cannot say in time.
 */
import type { Logger } from '../log/logger.ts';
import type { SiteTier } from '../site/site-tier.ts';
import type { ProbeResult } from './build-probe.ts';

export async function siteProbe(
  site: Pick<SiteTier, 'askSeed'>,
  meetingId: string,
  token: string | null,
  probeMaster: () => Promise<ProbeResult>,
  logger: Logger,
): Promise<ProbeResult> {
  const asked = await site.askSeed(meetingId, token).catch(() => null);
  if (asked?.kind === 'identified') {
    return { kind: 'identified', identity: { buildId: asked.buildId, documentsId: asked.documentsId, length: 0 }, bytesRead: 0, seed: asked.seed };
  }
  if (asked) logger.info(`probe ${meetingId}: ${asked.reason}; probing the master itself`);
  return probeMaster();
}
