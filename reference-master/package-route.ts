// The package routes: download-package-direct (nodes) and download-package (tablets; served by the
// master itself or redirected to a synced node). Bodies are chunked, small chunks, paced by the
// per-download throttle and the shared aggregate rate. The real master also reads the whole
// package into memory before its first byte, for every request (cut short or not); the reference
// streams from the file instead: that memory cost is not reproduced.
import { rm, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { deliver, type DeliveryOptions } from './delivery.ts';
import type { MeetingBook } from './meetings.ts';
import type { NodeRegistry } from './nodes.ts';
import { json, redirect } from './responses.ts';
import type { StatsBook } from './stats.ts';
import type { BodyFault } from './types.ts';

const FILE_READ_BYTES = 256 * 1024;

export interface PackageRouteDeps {
  meetings: MeetingBook;
  nodes: NodeRegistry;
  stats: StatsBook;
  redirectToNodes: boolean;
  /** Delivery of package bodies (chunk size, throttle, shared rate). */
  delivery: DeliveryOptions;
}

export async function onPackage(
  deps: PackageRouteDeps,
  req: IncomingMessage,
  res: ServerResponse,
  route: 'package' | 'tabletPackage',
  meetingId: string,
  bodyFault: BodyFault | undefined,
): Promise<void> {
  if (!deps.meetings.has(meetingId)) {
    await deliver(req, res, json(404, { detail: `会议 ${meetingId} 不存在` }), bodyFault, deps.delivery);
    return;
  }
  if (route === 'tabletPackage' && deps.redirectToNodes && deps.meetings.isActive(meetingId)) {
    const address = deps.nodes.pick(meetingId);
    if (address) {
      deps.stats.redirect(address);
      const location = `http://${address}/api/v1/meetings/${encodeURIComponent(meetingId)}/download-package`;
      await deliver(req, res, redirect(302, location), bodyFault, deps.delivery);
      return;
    }
  }

  const source = await deps.meetings.openPackage(meetingId);
  if (!source) {
    // Deleted while we looked.
    await deliver(req, res, json(404, { detail: `会议 ${meetingId} 不存在` }), bodyFault, deps.delivery);
    return;
  }
  const download = deps.stats.download(route, meetingId, source.buildId);
  try {
    const outcome = await deliver(
      req,
      res,
      {
        status: 200,
        headers: {
          'content-type': 'application/zip',
          'content-disposition': `attachment; filename="meeting_${meetingId}_pdfs.zip"`,
        },
        body: () => fileChunks(source.handle, deps.delivery.chunkSize),
      },
      bodyFault,
      { ...deps.delivery, onBytes: (n) => download.bytes(n) },
    );
    download.outcome(outcome);
  } finally {
    await source.handle.close().catch(() => undefined);
    if (source.temporary) await rm(source.path, { force: true });
  }
}

async function* fileChunks(handle: FileHandle, chunkSize: number): AsyncGenerator<Buffer> {
  const readSize = Math.max(chunkSize, FILE_READ_BYTES);
  for (;;) {
    // A fresh buffer per read: written slices stay referenced until the socket flushes them.
    const buffer = Buffer.allocUnsafe(readSize);
    const { bytesRead } = await handle.read(buffer, 0, readSize, null);
    if (bytesRead === 0) return;
    for (let offset = 0; offset < bytesRead; offset += chunkSize) {
      yield buffer.subarray(offset, Math.min(offset + chunkSize, bytesRead));
    }
  }
}
