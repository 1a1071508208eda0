// Reading blobs: streams with byte ranges, and verification by re-hashing.
import { close, createReadStream, open, read } from 'node:fs';
import type { Readable } from 'node:stream';
import type ssri from 'ssri';
import { invalidArgument, isErrno, notFound, TslayerError } from '../errors.js';
import { digestAlgorithm, type Digest } from '../image/digest.js';
import { fromIntegrity, integrityError, loadSsri, toIntegrity } from './integrity.js';

export interface ByteRange {
  /** First byte, default 0. */
  start?: number;
  /** Last byte, inclusive (like fs.createReadStream); default: to the end. */
  end?: number;
}

/**
 * A stream of the blob at `path`. Returned synchronously like fs.createReadStream;
 * a missing blob surfaces as an 'error' event with a NOT_FOUND TslayerError.
 */
export function readBlob(path: string, digest: Digest, range: ByteRange = {}): Readable {
  const { start, end } = range;
  for (const [name, v] of [['start', start], ['end', end]] as const) {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) {
      throw invalidArgument(`blob ${digest}: invalid range ${name} ${v}`);
    }
  }
  if (start !== undefined && end !== undefined && end < start) {
    throw invalidArgument(`blob ${digest}: invalid range ${start}-${end}`);
  }
  // The open goes through our own `fs.open` so ENOENT becomes NOT_FOUND on the stream.
  const fsImpl = {
    open: (p: string, flags: string, mode: number, cb: (err: Error | null, fd?: number) => void) =>
      open(p, flags, mode, (err, fd) => cb(err && isErrno(err, 'ENOENT') ? missing(digest) : err, fd)),
    read,
    close,
  };
  return createReadStream(path, { start, end, highWaterMark: 1 << 20, fs: fsImpl as never });
}

/** Re-hashes the blob at `path` as a stream; throws EINTEGRITY naming both digests. */
export async function verifyBlob(path: string, digest: Digest): Promise<void> {
  const algorithm = digestAlgorithm(digest);
  try {
    // `algorithms` keeps ssri from also computing its default sha512.
    const opts = { algorithms: [algorithm] } as { size?: number };
    await loadSsri().checkStream(createReadStream(path, { highWaterMark: 1 << 20 }), toIntegrity(digest).toString(), opts);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) throw missing(digest);
    const found = (e as { found?: unknown }).found;
    if (isErrno(e, 'EINTEGRITY') && found instanceof Object) {
      throw integrityError(digest, digest, fromIntegrity(found as ssri.Integrity, algorithm));
    }
    throw e;
  }
}

export function missing(digest: Digest): TslayerError {
  return notFound(`blob ${digest} not found`);
}
