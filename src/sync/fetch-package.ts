import { pipeline } from 'node:stream/promises';
import { MasterError, toMasterError, type MasterClient, type PackageResponse } from '../master/master-client.ts';
import { checkZipFile } from '../store/zip-check.ts';
import type { PackageHash } from './hash-thread.ts';
import { PackageFileWriter } from './package-file-writer.ts';

/** Opens a package's stream: the master's (MasterClient.openPackage) or a sibling node's (site-tier.ts). */
export type OpenPackage = (options: { signal: AbortSignal; headersTimeoutMs: number; idleTimeoutMs: number }) => Promise<PackageResponse>;

export interface FetchPackageOptions {
  master: MasterClient;
  /** Where the bytes come from instead of the master (a sibling node); default: master.openPackage. */
  open?: OpenPackage;
  meetingId: string;
  tempPath: string;
  /** Abort after this long without a byte (the master is slow; a total timeout would cap size). */
  idleTimeoutMs: number;
  headersTimeoutMs: number;
  signal: AbortSignal;
  /** Called as bytes reach the temp file (after the write completed), with the running total. */
  onProgress?: (bytesWritten: number, written: readonly Buffer[]) => void;
  /**
   * The temp file already exists, holding this many bytes of the package kept from a failed
   * attempt: a response starting there (its offset) goes on from them, one starting at 0 (the
   * whole package) writes the file over. Absent: a new file.
   */
  keptBytes?: number;
  /** The sha256 of the temp file as it is written (hash-thread.ts), made when the body starts; default: on this thread. */
  hash?: (path: string) => PackageHash;
}

export interface FetchedPackage {
  /** Of the whole file, kept bytes included. */
  sha256: string;
  size: number;
  /** Bytes kept from a failed attempt that this one went on from (0: all fetched now). */
  resumedFrom: number;
  /** The response's headers (a sibling's ETag is checked against the sha256). */
  headers: Record<string, string>;
  /** Its trailer fields, if any (a sibling's streamed answer ends with its package's sha256). */
  trailers: Record<string, string>;
}

/** A download that must not be promoted; `retryable` is false for ones that will fail the same way. */
export class FetchError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryable = true,
  ) {
    super(message);
    this.name = 'FetchError';
  }
}

/**
 * Streams one package from the master into `tempPath`, hashing as it writes, with memory bounded
 * by the stream buffers whatever the package size. Resolves only for a body that ended properly
 * (packageGet fails a body cut before its framing says it ends: TRUNCATED, ECONNRESET) and is a complete zip.
 * The caller owns the temp file in every outcome.
 */
export async function fetchPackage(options: FetchPackageOptions): Promise<FetchedPackage> {
  const idle = new AbortController();
  const signal = AbortSignal.any([options.signal, idle.signal]);
  let timer: NodeJS.Timeout | undefined;
  // The writer reports bytes whose disk write completes after the pipeline already failed; without
  // this flag such a late report re-armed the watchdog after `finally`, leaving a stray
  // downloadTimeout-long timer that kept the process alive (and the event loop busy) for nothing.
  let finished = false;
  const arm = () => {
    if (finished) return;
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(new FetchError(`no data for ${Math.round(options.idleTimeoutMs / 1000)} s`, 'IDLE_TIMEOUT')), options.idleTimeoutMs);
  };
  arm();
  let hash: PackageHash | undefined;
  try {
    const openOptions = { signal, headersTimeoutMs: options.headersTimeoutMs, idleTimeoutMs: options.idleTimeoutMs };
    const response = await (options.open ? options.open(openOptions) : options.master.openPackage(options.meetingId, openOptions));
    arm();
    const offset = response.offset ?? 0;
    if (offset > 0 && (options.keptBytes === undefined || offset !== options.keptBytes)) {
      response.body.destroy();
      throw new FetchError(`the answer starts at byte ${offset}, ${options.keptBytes ?? 0} bytes are kept`, 'BAD_RANGE');
    }
    hash = options.hash?.(options.tempPath);
    const writer = new PackageFileWriter(
      options.tempPath,
      (total, written) => {
        // A late report from a failed attempt must not show up as progress of the next one.
        if (finished) return;
        arm();
        options.onProgress?.(total, written);
      },
      { hash, keepBytes: options.keptBytes === undefined ? undefined : offset },
    );
    try {
      await pipeline(response.body, writer, { signal });
    } catch (error) {
      throw describeStreamError(error, signal, writer.bytesWritten);
    }
    // Asked for at once (the hash thread finishes it while the zip is checked), awaited below.
    const sha256 = writer.sha256();
    sha256.catch(() => {});
    const received = writer.bytesWritten;
    const zip = await checkZipFile(options.tempPath);
    if (!zip.ok) {
      throw new FetchError(`downloaded ${received} bytes but it is not a complete zip: ${zip.reason}`, 'NOT_A_ZIP');
    }
    // Bounded like the body: a hash thread stuck on a read (a hung disk) must not hold the job,
    // and with it the meeting's slot, past the idle timeout or a cancel.
    return { sha256: await untilAborted(sha256, signal), size: received, resumedFrom: offset, headers: response.headers, trailers: response.trailers ?? {} };
  } catch (error) {
    // The writer gives its hash up when destroyed early, not when the pipeline fails after it
    // finished (or the zip check fails): without this the hash thread would keep the temp file
    // open after the caller deletes it. Does nothing to a digested hash.
    hash?.dispose();
    if (error instanceof FetchError) throw error;
    if (signal.aborted && signal.reason instanceof FetchError) throw signal.reason;
    const masterError = toMasterError(error, 'package download');
    throw new FetchError(masterError.message, masterError.code, !(masterError instanceof MasterError && masterError.status === 404));
  } finally {
    finished = true;
    clearTimeout(timer);
  }
}

/** `work`'s outcome, or the signal's reason if it aborts first. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function describeStreamError(error: unknown, signal: AbortSignal, received: number): FetchError {
  if (signal.aborted) {
    const reason = signal.reason;
    if (reason instanceof FetchError) return new FetchError(`${reason.message} after ${received} bytes`, reason.code, reason.retryable);
    return new FetchError(`download cancelled after ${received} bytes`, 'CANCELLED', false);
  }
  const err = error as NodeJS.ErrnoException & { cause?: { code?: string } };
  const code = err.code ?? err.cause?.code ?? 'ERROR';
  if (code === 'ENOSPC' || code === 'EIO' || code === 'EDQUOT') {
    return new FetchError(`disk error after ${received} bytes: ${err.message}`, code);
  }
  return new FetchError(`body broken after ${received} bytes: ${err.message} (${code})`, code);
}
