import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigStore } from '../config/config-store.ts';
import type { PackageSource } from '../store/package-state.ts';
import type { StoredPackage } from '../store/package-store.ts';
import type { FetchView } from '../sync/fetch-view.ts';
import type { SyncFailure } from '../sync/sync-jobs.ts';
import { buildStatus, type StatusSources } from './status.ts';

function pkg(meetingId: string, source: PackageSource): StoredPackage {
  return {
    version: 1,
    meetingId,
    sha256: 'f'.repeat(64),
    size: 100,
    fetchedAt: new Date(0).toISOString(),
    token: 'T1',
    title: `held ${meetingId}`,
    source,
    buildId: 'b'.repeat(64),
    documentsId: null,
    standsFor: null,
    inode: 1,
    mtimeMs: 0,
    path: `/nowhere/${meetingId}/package.zip`,
  };
}

/** Sources of a node that polled once: `active` meetings listed, `held` packages, `syncing` ids, `failed` ids. */
function sources(config: ConfigStore, options: { active: string[]; held: StoredPackage[]; syncing?: string[]; failed?: string[]; servable: string[] }): StatusSources {
  const failure: SyncFailure = { message: 'refused', code: 'HTTP_500', at: 0, failedJobs: 1, retryAt: 1_000 };
  const meetings = options.active.map((id) => ({ id, title: `meeting ${id}` }));
  const jobs = (options.syncing ?? []).map((id) => ({ meetingId: id, settled: false, state: 'running', bytesWritten: 10, rate: 5, attempt: 1, reason: 'new', createdAt: 0, source: { kind: 'master' } }) as unknown as FetchView);
  return {
    config: () => config.current,
    sync: {
      lastSuccess: { at: 0, token: 'T1', meetings },
      lastError: null,
      lastAttemptAt: 0,
      activeMeetings: () => meetings,
      isServable: (id) => options.servable.includes(id),
    },
    jobs: {
      inFlightIds: () => new Set(options.syncing ?? []),
      jobs: () => jobs,
      failure: (id) => ((options.failed ?? []).includes(id) ? failure : undefined),
      fetchedBytes: { master: 0, peer: 0 },
    },
    store: { root: '/nowhere', list: () => options.held, usedBytes: () => options.held.reduce((sum, p) => sum + p.size, 0) },
    stats: { peek: () => undefined, activeDownloads: 0, totalBytesServed: 0 },
    quota: { state: { lastEviction: null, lastRefusal: null, inFlightBytes: 0 } },
    announcer: { state: { registered: true, lastRegisterAt: 0, lastHeartbeatAt: 0 } as never },
    site: {
      enabled: false,
      offReason: 'no site key',
      keySet: false,
      seedNow: () => null,
      counters: { peerFetches: 0, fallbacks: 0, buildsFromSeed: 0, buildAskFailures: 0, securityEvents: 0, handovers: 0, resumes: 0, resumedBytes: 0 },
      lastFailure: null,
      lastSecurityEvent: null,
      health: { view: () => [] } as never,
      members: { view: () => ({ members: [], nodes: [], listedAt: null, listError: null, heldOut: [] }) } as never,
    },
    peers: { bytes: 0, requests: 0, refused: 0, busy: 0, bytesFor: () => 0 },
    runtime: () => ({ serving: true, masterUrl: 'http://127.0.0.1:1', address: '127.0.0.1:2', port: 2, startedAt: 0, version: '0.0.0', schedule: {} as never, restartRequired: [] }),
  };
}

test('each meeting\'s state is decided here once: syncing, preheated, ended, synced, failed or active', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'status-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const config = ConfigStore.open(path.join(dir, 'node_config.json'));
  const status = buildStatus(
    sources(config, {
      active: ['live', 'fresh', 'broken', 'moving', 'started'],
      held: [pkg('live', 'master'), pkg('soon', 'preheat'), pkg('gone', 'master'), pkg('started', 'preheat'), pkg('gonepre', 'confirmed')],
      syncing: ['moving'],
      failed: ['broken'],
      servable: ['live'],
    }),
    null,
  );
  const state = Object.fromEntries(status.meetings.map((m) => [m.id, m.state]));
  assert.deepEqual(state, {
    live: 'synced',
    fresh: 'active',
    broken: 'failed',
    moving: 'syncing',
    // Held as a preheat but its meeting started: waiting for its start check, not served yet.
    started: 'active',
    soon: 'preheated',
    gone: 'ended',
    gonepre: 'ended',
  });
  const byId = new Map(status.meetings.map((m) => [m.id, m]));
  assert.equal(byId.get('soon')?.servable, false);
  assert.equal(byId.get('soon')?.package_source, 'preheat');
  assert.equal(byId.get('moving')?.progress?.bytes, 10);
  assert.equal(byId.get('broken')?.last_error?.code, 'HTTP_500');
});
