// A stand-in for the real master (a FastAPI service) that reproduces its wire contract, quirks
// included, as written down in /work/shared/MASTER_API.md. This module is the public face; the
// parts live beside it (server.ts composes them).
import { ReferenceMasterServer } from './server.ts';
import type { ReferenceMaster, ReferenceMasterOptions } from './types.ts';

export { ReferenceMasterServer } from './server.ts';
export { FAULT_ROUTES, MEETING_STATUS } from './types.ts';
export type {
  AddMeetingInput,
  BuildReason,
  BuildRecord,
  DownloadCounters,
  Fault,
  FaultKind,
  FaultRoute,
  MasterStats,
  MeetingDocumentView,
  MeetingStatusWord,
  MeetingTimeInput,
  MeetingView,
  NodeView,
  ReferenceMaster,
  ReferenceMasterOptions,
  RequestLogEntry,
} from './types.ts';

export function createReferenceMaster(options: ReferenceMasterOptions = {}): ReferenceMaster {
  return new ReferenceMasterServer(options);
}
