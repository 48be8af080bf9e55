// The node registry: registered nodes, their heartbeats, who is online, and which synced node a
// tablet is sent to. In memory only, like the real master's.
import { isPlainObject } from './request-body.ts';
import type { NodeView } from './types.ts';

/** What the registry keeps per node: its view (online is computed) plus how redirects were spread. */
interface NodeRecord extends Omit<NodeView, 'online'> {
  /** Redirects handed out since the node last reported its load: spreads a burst of tablets. */
  redirectsSinceLoad: number;
  lastPicked: number;
}

export interface HeartbeatInput {
  nodeId: string;
  address: string;
  status: string;
  activeMeetings: unknown[];
  reportedSynced: string[];
  /** The whole body, extra fields included. */
  body: Record<string, unknown>;
}

export class NodeRegistry {
  readonly #expiryMs: number;
  readonly #nodes = new Map<string, NodeRecord>();
  #pickCounter = 0;

  constructor(expiryMs: number) {
    this.#expiryMs = expiryMs;
  }

  register(nodeId: string, address: string, status: string): void {
    this.#add(nodeId, address, status);
  }

  unregister(nodeId: string): boolean {
    return this.#nodes.delete(nodeId);
  }

  /**
   * Stores a heartbeat (an unknown node is registered again from it). Returns false when an active
   * meeting lacks a string id or title: the real master stores the beat, then fails, and the
   * stored entry keeps failing /list until this node beats validly or expires.
   */
  heartbeat(beat: HeartbeatInput): boolean {
    const node = this.#nodes.get(beat.nodeId) ?? this.#add(beat.nodeId, beat.address, beat.status);
    node.address = beat.address;
    node.status = beat.status;
    node.lastSeen = Date.now();
    node.heartbeats += 1;
    node.lastHeartbeat = beat.body;
    const load = beat.body['load'];
    if (load !== undefined) {
      node.load = load;
      if (isPlainObject(load) && typeof load['activeDownloads'] === 'number') node.redirectsSinceLoad = 0;
    }
    node.activeMeetings = beat.activeMeetings;
    node.reportedSyncedMeetings = beat.reportedSynced;
    const broken = beat.activeMeetings.some((item) => {
      const meeting = item as Record<string, unknown>;
      return typeof meeting['id'] !== 'string' || typeof meeting['title'] !== 'string';
    });
    node.breaksList = broken;
    if (broken) {
      node.syncedMeetings = [];
      return false;
    }
    const activeIds = new Set(beat.activeMeetings.map((item) => (item as Record<string, unknown>)['id'] as string));
    node.syncedMeetings = [...new Set(node.reportedSyncedMeetings)].filter((id) => activeIds.has(id));
    return true;
  }

  /** /nodes/list items; null when a stored heartbeat breaks the list (the master answers 500). */
  listItems(): Record<string, unknown>[] | null {
    const now = Date.now();
    const items: Record<string, unknown>[] = [];
    for (const node of this.#online(now)) {
      if (node.breaksList) return null;
      const item: Record<string, unknown> = {
        node_id: node.nodeId,
        address: node.address,
        status: node.status,
        last_seen: node.lastSeen / 1000,
        uptime: (now - node.registeredAt) / 1000,
      };
      const active = node.activeMeetings as { id: string; title: string }[];
      if (active.length > 0) {
        item['active_meeting'] = active[0]?.id;
        item['active_meetings'] = active.map(({ id, title }) => ({ id, title }));
      }
      items.push(item);
    }
    return items;
  }

  onlineAddresses(): string[] {
    return this.#online(Date.now()).map((node) => node.address);
  }

  allOnlineSynced(meetingId: string): boolean {
    return this.#online(Date.now()).every((node) => node.syncedMeetings.includes(meetingId));
  }

  /** Least busy online node holding the package: reported activeDownloads plus redirects since. */
  pick(meetingId: string): string | null {
    let best: NodeRecord | null = null;
    let bestScore = Infinity;
    for (const node of this.#online(Date.now())) {
      if (node.breaksList || !node.syncedMeetings.includes(meetingId)) continue;
      const reported = isPlainObject(node.load) && typeof node.load['activeDownloads'] === 'number'
        ? node.load['activeDownloads']
        : 0;
      const score = reported + node.redirectsSinceLoad;
      if (score < bestScore || (score === bestScore && best && node.lastPicked < best.lastPicked)) {
        best = node;
        bestScore = score;
      }
    }
    if (!best) return null;
    best.redirectsSinceLoad += 1;
    best.lastPicked = ++this.#pickCounter;
    return best.address;
  }

  /** Deletes nodes past their expiry. */
  sweep(): void {
    const now = Date.now();
    for (const [id, node] of this.#nodes) {
      if (!this.#isOnline(node, now)) this.#nodes.delete(id);
    }
  }

  views(): NodeView[] {
    const now = Date.now();
    return [...this.#nodes.values()].map((node) => ({
      nodeId: node.nodeId,
      address: node.address,
      status: node.status,
      online: this.#isOnline(node, now),
      registeredAt: node.registeredAt,
      lastSeen: node.lastSeen,
      activeMeetings: structuredClone(node.activeMeetings),
      syncedMeetings: [...node.syncedMeetings],
      reportedSyncedMeetings: [...node.reportedSyncedMeetings],
      breaksList: node.breaksList,
      heartbeats: node.heartbeats,
      lastHeartbeat: structuredClone(node.lastHeartbeat),
      load: structuredClone(node.load),
    }));
  }

  #isOnline(node: NodeRecord, now: number): boolean {
    return now - node.lastSeen < this.#expiryMs;
  }

  #online(now: number): NodeRecord[] {
    return [...this.#nodes.values()].filter((node) => this.#isOnline(node, now));
  }

  #add(nodeId: string, address: string, status: string): NodeRecord {
    const now = Date.now();
    const node: NodeRecord = {
      nodeId,
      address,
      status,
      registeredAt: now,
      lastSeen: now,
      activeMeetings: [],
      syncedMeetings: [],
      reportedSyncedMeetings: [],
      breaksList: false,
      heartbeats: 0,
      lastHeartbeat: null,
      load: undefined,
      redirectsSinceLoad: 0,
      lastPicked: 0,
    };
    this.#nodes.set(nodeId, node);
    return node;
  }
}
