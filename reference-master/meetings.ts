// Meetings and their packages: status words, documents with their upload uuids, the scheduled
// time, and which build is kept and served. The master builds when a meeting starts (always anew),
// on the first download of a meeting not started (kept until it starts), and a one-off for every
// download of an ended meeting; it deletes the kept build when the meeting ends.
import { randomUUID } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { localMinute, parseMeetingTime } from './local-time.ts';
import type { PackageBuilder } from './package-builder.ts';
import { defaultDocuments, type BuiltPackage, type PackageDocument } from './packages.ts';
import type { TokenClock } from './token.ts';
import {
  MEETING_STATUS,
  type AddMeetingInput,
  type BuildReason,
  type MeetingStatusWord,
  type MeetingTimeInput,
  type MeetingView,
} from './types.ts';

/**
 * Printable ASCII, so the id fits the content-disposition header. Deliberately looser than what a
 * node should accept (`..`, quotes, spaces pass): tests can make the master list hostile ids.
 */
const MEETING_ID = /^[\x20-\x7e]+$/;
const MAX_MEETING_ID_LENGTH = 200;
/** DOS time in a zip header has 2-second resolution. */
const BUILD_TIME_STEP_MS = 2_000;

interface StoredDocument {
  agenda: number;
  uploadId: string;
  name: string;
  content?: string | Uint8Array;
}

interface KeptBuild {
  pkg: BuiltPackage;
  reason: Exclude<BuildReason, 'oneOff'>;
}

interface MeetingRecord {
  id: string;
  title: string;
  intro: string;
  timeMs: number;
  status: MeetingStatusWord;
  documents: StoredDocument[];
  packageSizeBytes: number | undefined;
  kept: KeptBuild | null;
  /** The first download's build of a meeting not started, while it runs (later downloads wait for it). */
  preheating: Promise<KeptBuild | null> | null;
  activations: number;
  /** Bumped by every start/end/delete so a build finishing late knows it was overtaken. */
  generation: number;
  starting: Promise<MeetingView> | null;
  /** Build time of the last build (epoch ms). */
  lastBuiltAt: number;
}

/** An open package for one download; the caller closes it, and deletes a temporary one. */
export interface PackageSource {
  handle: FileHandle;
  path: string;
  buildId: string;
  temporary: boolean;
}

export class MeetingBook {
  readonly #builder: PackageBuilder;
  readonly #token: TokenClock;
  readonly #meetings = new Map<string, MeetingRecord>();
  /** Ids of active meetings in the order they became active. */
  readonly #activeOrder: string[] = [];
  #closed = false;

  constructor(builder: PackageBuilder, token: TokenClock) {
    this.#builder = builder;
    this.#token = token;
  }

  has(id: string): boolean {
    return this.#meetings.has(id);
  }

  isActive(id: string): boolean {
    return this.#meetings.get(id)?.status === MEETING_STATUS.active;
  }

  add(input: AddMeetingInput): MeetingView {
    if (typeof input.id !== 'string' || !MEETING_ID.test(input.id) || input.id.length > MAX_MEETING_ID_LENGTH) {
      throw new Error(`invalid meeting id: ${JSON.stringify(input.id)}`);
    }
    if (typeof input.title !== 'string') throw new Error('meeting title must be a string');
    if (input.intro !== undefined && typeof input.intro !== 'string') throw new Error('meeting intro must be a string');
    if (this.#meetings.has(input.id)) throw new Error(`meeting ${input.id} already exists`);
    const timeMs = input.time === undefined ? Date.now() : parseMeetingTime(input.time);
    if (timeMs === null) throw new Error(`invalid meeting time: ${JSON.stringify(input.time)}`);
    const record: MeetingRecord = {
      id: input.id,
      title: input.title,
      intro: input.intro ?? '',
      timeMs,
      status: MEETING_STATUS.notStarted,
      documents: uploads([], input.documents ?? defaultDocuments(input.title)),
      packageSizeBytes: input.packageSizeBytes,
      kept: null,
      preheating: null,
      activations: 0,
      generation: 0,
      starting: null,
      lastBuiltAt: 0,
    };
    this.#meetings.set(record.id, record);
    return meetingView(record);
  }

  start(id: string): Promise<MeetingView> {
    const meeting = this.#get(id);
    if (meeting.status === MEETING_STATUS.active) return Promise.resolve(meetingView(meeting));
    meeting.starting ??= this.#activate(meeting).finally(() => {
      meeting.starting = null;
    });
    return meeting.starting;
  }

  /** Builds anew from the current documents (a kept preheat build is replaced), then marks 进行中. */
  async #activate(meeting: MeetingRecord): Promise<MeetingView> {
    if (this.#closed) throw new Error('reference master is closed');
    const generation = ++meeting.generation;
    const pkg = await this.#build(meeting, 'start');
    if (meeting.generation !== generation || this.#closed || this.#meetings.get(meeting.id) !== meeting) {
      await rm(pkg.path, { force: true });
      return meetingView(meeting);
    }
    const replaced = meeting.kept;
    meeting.kept = { pkg, reason: 'start' };
    meeting.status = MEETING_STATUS.active;
    meeting.activations += 1;
    this.#activeOrder.push(meeting.id);
    this.#token.meetingActivated(meeting.id);
    // Downloads in progress keep their open file handle; unlinking does not cut them.
    if (replaced) await rm(replaced.pkg.path, { force: true });
    return meetingView(meeting);
  }

  async end(id: string): Promise<MeetingView> {
    const meeting = this.#get(id);
    meeting.status = MEETING_STATUS.ended;
    await this.#retire(meeting);
    return meetingView(meeting);
  }

  async delete(id: string): Promise<void> {
    const meeting = this.#get(id);
    this.#meetings.delete(id);
    await this.#retire(meeting);
  }

  /** Leaves 进行中 (if it was) and deletes the kept build. */
  async #retire(meeting: MeetingRecord): Promise<void> {
    meeting.generation += 1;
    const index = this.#activeOrder.indexOf(meeting.id);
    if (index >= 0) this.#activeOrder.splice(index, 1);
    this.#token.cancel(meeting.id);
    const kept = meeting.kept;
    meeting.kept = null;
    if (kept) await rm(kept.pkg.path, { force: true });
  }

  setDocuments(id: string, documents: readonly PackageDocument[]): MeetingView {
    const meeting = this.#get(id);
    meeting.documents = uploads(meeting.documents, documents);
    return meetingView(meeting);
  }

  setTime(id: string, time: MeetingTimeInput): MeetingView {
    const meeting = this.#get(id);
    const timeMs = parseMeetingTime(time);
    if (timeMs === null) throw new Error(`invalid meeting time: ${JSON.stringify(time)}`);
    meeting.timeMs = timeMs;
    return meetingView(meeting);
  }

  views(): MeetingView[] {
    return [...this.#meetings.values()].map(meetingView);
  }

  view(id: string): MeetingView | null {
    const meeting = this.#meetings.get(id);
    return meeting ? meetingView(meeting) : null;
  }

  /** Active meetings as /status/node lists them, in the order they became active. */
  activeList(): { id: string; title: string }[] {
    return this.#activeOrder.flatMap((id) => {
      const meeting = this.#meetings.get(id);
      return meeting ? [{ id: meeting.id, title: meeting.title }] : [];
    });
  }

  /** `GET /api/v1/meetings/`: every meeting; the files under agenda items carry no attributes. */
  listing(): Record<string, unknown>[] {
    return [...this.#meetings.values()].map((meeting) => ({
      id: meeting.id,
      title: meeting.title,
      intro: meeting.intro,
      time: localMinute(new Date(meeting.timeMs)),
      status: meeting.status,
      agenda_items: meeting.documents.map((document) => ({
        id: document.uploadId,
        title: document.name.replace(/\.pdf$/i, ''),
        position: document.agenda,
        files: [{ id: null, filename: null, file_path: null, file_size: null, upload_time: null }],
      })),
    }));
  }

  /**
   * Opens the package a download gets: the kept build (active, or not started and built by an
   * earlier download), a new kept build (first download of a meeting not started), or a one-off
   * temporary build (ended). Null for an unknown meeting.
   */
  async openPackage(id: string): Promise<PackageSource | null> {
    const meeting = this.#meetings.get(id);
    if (!meeting) return null;
    let kept = meeting.kept;
    if (!kept && meeting.status === MEETING_STATUS.notStarted) {
      meeting.preheating ??= this.#preheat(meeting).finally(() => {
        meeting.preheating = null;
      });
      kept = await meeting.preheating;
    }
    if (kept && meeting.status !== MEETING_STATUS.ended) {
      try {
        return { handle: await open(kept.pkg.path, 'r'), path: kept.pkg.path, buildId: kept.pkg.buildId, temporary: false };
      } catch (error) {
        // Replaced or ended between lookup and open: serve a one-off build like an ended meeting.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    const pkg = await this.#build(meeting, 'oneOff');
    try {
      return { handle: await open(pkg.path, 'r'), path: pkg.path, buildId: pkg.buildId, temporary: true };
    } catch (error) {
      await rm(pkg.path, { force: true });
      throw error;
    }
  }

  /** The first download's build of a meeting not started; null when a start or end overtook it. */
  async #preheat(meeting: MeetingRecord): Promise<KeptBuild | null> {
    const generation = meeting.generation;
    const pkg = await this.#build(meeting, 'preheat');
    if (meeting.generation !== generation || meeting.kept || this.#closed || this.#meetings.get(meeting.id) !== meeting) {
      await rm(pkg.path, { force: true });
      return null;
    }
    meeting.kept = { pkg, reason: 'preheat' };
    return meeting.kept;
  }

  #build(meeting: MeetingRecord, reason: BuildReason): Promise<BuiltPackage> {
    // Two builds of one meeting never share a header time: builds within 2 s of each other are
    // stamped 2 s apart (running a little ahead of the clock), as real builds seconds apart differ.
    const now = Math.floor(Date.now() / 1000) * 1000;
    const builtAt = Math.max(now, meeting.lastBuiltAt + BUILD_TIME_STEP_MS);
    meeting.lastBuiltAt = builtAt;
    return this.#builder.build({
      meetingId: meeting.id,
      title: meeting.title,
      documents: meeting.documents,
      packageSizeBytes: meeting.packageSizeBytes,
      buildTime: new Date(builtAt),
    }, reason);
  }

  #get(id: string): MeetingRecord {
    const meeting = this.#meetings.get(id);
    if (!meeting) throw new Error(`meeting ${id} does not exist`);
    return meeting;
  }

  close(): void {
    this.#closed = true;
  }
}

/**
 * The folder after an upload of `documents`: a document equal to the one at its agenda position
 * (same name and content) keeps its upload uuid; a changed or added one gets a new uuid.
 */
function uploads(previous: readonly StoredDocument[], documents: readonly PackageDocument[]): StoredDocument[] {
  return documents.map((document, index) => {
    const agenda = index + 1;
    const before = previous.find((stored) => stored.agenda === agenda);
    const same = before && before.name === document.name && sameContent(before.content, document.content);
    const uploadId = same ? before.uploadId : (document.uploadId ?? randomUUID());
    return { agenda, uploadId, name: document.name, ...(document.content !== undefined ? { content: document.content } : {}) };
  });
}

function sameContent(a: string | Uint8Array | undefined, b: string | Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const bytes = (value: string | Uint8Array) => (typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value));
  return bytes(a).equals(bytes(b));
}

function meetingView(meeting: MeetingRecord): MeetingView {
  const kept = meeting.kept;
  return {
    id: meeting.id,
    title: meeting.title,
    intro: meeting.intro,
    time: localMinute(new Date(meeting.timeMs)),
    timeMs: meeting.timeMs,
    status: meeting.status,
    active: meeting.status === MEETING_STATUS.active,
    activations: meeting.activations,
    packageSizeBytes: meeting.packageSizeBytes ?? null,
    documents: meeting.documents.map(({ agenda, uploadId, name }) => ({ agenda, uploadId, name })),
    package: kept
      ? { size: kept.pkg.size, sha256: kept.pkg.sha256, buildId: kept.pkg.buildId, builtAt: kept.pkg.builtAt, reason: kept.reason }
      : null,
  };
}
