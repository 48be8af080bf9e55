import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SiteNode } from '../master/master-client.ts';
import { SiteMembers } from './site-members.ts';

function node(address: string): SiteNode {
  return { nodeId: `node-${address}`, address, lastSeen: 1, activeMeetings: [] };
}

describe('SiteMembers', () => {
  test('the master\'s list, static peers and this node; re-read only when older than asked', async () => {
    let now = 1_000;
    let reads = 0;
    let listed = [node('127.0.0.1:8001'), node('127.0.0.1:8002')];
    const site = new SiteMembers({
      listNodes: async () => {
        reads++;
        return listed;
      },
      self: () => '127.0.0.1:8001',
      staticPeers: () => ['127.0.0.1:8009'],
      now: () => now,
    });
    assert.deepEqual(await site.members(5_000), ['127.0.0.1:8001', '127.0.0.1:8002', '127.0.0.1:8009']);
    listed = [node('127.0.0.1:8001'), node('127.0.0.1:8003')];
    now += 4_999;
    assert.deepEqual(await site.members(5_000), ['127.0.0.1:8001', '127.0.0.1:8002', '127.0.0.1:8009'], 'still fresh enough');
    now += 1;
    assert.deepEqual(await site.members(5_000), ['127.0.0.1:8001', '127.0.0.1:8003', '127.0.0.1:8009']);
    assert.equal(reads, 2);
  });

  test('concurrent callers share one read; a failed read keeps the last list and says why', async () => {
    let reads = 0;
    let fail = false;
    const site = new SiteMembers({
      listNodes: async () => {
        reads++;
        await new Promise((resolve) => setTimeout(resolve, 10));
        if (fail) throw new Error('master unreachable');
        return [node('127.0.0.1:8002')];
      },
      self: () => '127.0.0.1:8001',
      staticPeers: () => [],
    });
    await Promise.all([site.members(0), site.members(0), site.members(0)]);
    assert.equal(reads, 1);
    fail = true;
    assert.deepEqual(await site.members(0), ['127.0.0.1:8001', '127.0.0.1:8002']);
    assert.equal(site.view().listError, 'master unreachable');
  });

  test('a sibling that failed is left out for a while, never this node itself', async () => {
    let now = 0;
    const site = new SiteMembers({
      listNodes: async () => [node('127.0.0.1:8001'), node('127.0.0.1:8002')],
      self: () => '127.0.0.1:8001',
      staticPeers: () => [],
      failureHoldMs: 60_000,
      now: () => now,
    });
    await site.refresh();
    site.markFailed('127.0.0.1:8002');
    site.markFailed('127.0.0.1:8001');
    assert.deepEqual(site.view().members, ['127.0.0.1:8001']);
    now = 60_000;
    assert.deepEqual(site.view().members, ['127.0.0.1:8001', '127.0.0.1:8002']);
  });
});
