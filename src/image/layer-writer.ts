// Storing a layer from its uncompressed tar stream, in one pass:
//
//   tar ─┬─ sha256 ──────────────────────────────────────── diff id
//        ├─ compress (gzip on all cores | zstd with workers | none)
//        │     └─ content store ingest (hashes while writing) ─ digest, size
//        └─ side consumer (optional: commit applies the same bytes to a new snapshot)
//
// The tar is read once; the branches go at the pace of the slowest. The first failure
// anywhere destroys every stream, and the staged blob is dropped by the store.
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CompressStream } from 'zstd-napi';
import type { ContentStore } from '../content/index.js';
import { invalidArgument } from '../errors.js';
import { DEFAULT_GZIP_LEVEL, parallelGzip } from '../archive/parallel-gzip.js';
import type { Descriptor } from './descriptor.js';
import type { Digest } from './digest.js';
import { MediaType, type Compression } from './mediatype.js';

const HWM = 1 << 20;

export const DEFAULT_ZSTD_LEVEL = 3;

export interface LayerWriterOptions {
  compression: Compression;
  /** gzip: zlib level 0-9 (default 6); zstd: level 1-19 (default 3). */
  level?: number;
  /** Receives the same tar bytes; the layer is stored only when it succeeds too. */
  side?: (tar: Readable) => Promise<unknown>;
  signal?: AbortSignal;
}

export interface WrittenLayer {
  /** The stored blob (OCI layer media type for the compression). */
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar. */
  diffId: Digest;
  /** Bytes of the uncompressed tar. */
  tarSize: number;
}

export function layerMediaType(c: Compression): string {
  switch (c) {
    case 'gzip':
      return MediaType.OciLayerGzip;
    case 'zstd':
      return MediaType.OciLayerZstd;
    case 'none':
      return MediaType.OciLayer;
    default:
      throw invalidArgument(`unknown compression ${JSON.stringify(c)} (use gzip, zstd or none)`);
  }
}

/**
 * A compressor whose output is a function of the input alone (same tar, same blob):
 * gzip members cut at fixed offsets; zstd with a fixed worker count ≥ 1 (libzstd's
 * multi-threaded output does not depend on how many workers there are).
 */
export function compressor(c: Compression, level?: number): Transform {
  switch (c) {
    case 'gzip':
      return parallelGzip({ level: level ?? DEFAULT_GZIP_LEVEL });
    case 'zstd':
      return new CompressStream({
        compressionLevel: level ?? DEFAULT_ZSTD_LEVEL,
        nbWorkers: Math.max(1, availableParallelism()),
        checksumFlag: true,
      });
    case 'none':
      return new PassThrough({ highWaterMark: HWM });
    default:
      throw invalidArgument(`unknown compression ${JSON.stringify(c)} (use gzip, zstd or none)`);
  }
}

export async function writeLayer(content: ContentStore, tar: Readable, opts: LayerWriterOptions): Promise<WrittenLayer> {
  const mediaType = layerMediaType(opts.compression);
  const diff = createHash('sha256');
  let tarSize = 0;
  const hashing = new Transform({
    highWaterMark: HWM,
    transform(chunk: Buffer, _enc, cb) {
      diff.update(chunk);
      tarSize += chunk.length;
      cb(null, chunk);
    },
  });
  const toStore = new PassThrough({ highWaterMark: HWM });
  const toSide = opts.side ? new PassThrough({ highWaterMark: HWM }) : undefined;
  const compress = compressor(opts.compression, opts.level);
  const all = [tar, hashing, toStore, compress, ...(toSide ? [toSide] : [])];
  const fail = (e: unknown): never => {
    for (const s of all) if (!s.destroyed) s.destroy(e as Error);
    throw e;
  };

  // pipe() to two destinations pauses the source while either one is full.
  hashing.pipe(toStore);
  if (toSide) hashing.pipe(toSide);
  const outcomes = await Promise.allSettled([
    pipeline(tar, hashing, { signal: opts.signal }).catch(fail),
    pipeline(toStore, compress).catch(fail),
    content.putUnknown(compress).catch(fail),
    ...(toSide ? [opts.side!(toSide).catch(fail)] : []),
  ]);
  const failure = firstError(outcomes);
  if (failure !== undefined) throw failure;
  const stored = (outcomes[2] as PromiseFulfilledResult<{ digest: Digest; size: number }>).value;
  return {
    descriptor: { mediaType, digest: stored.digest, size: stored.size },
    diffId: `sha256:${diff.digest('hex')}`,
    tarSize,
  };
}

/** The error that started it, not the "premature close" of the streams torn down after it. */
function firstError(outcomes: PromiseSettledResult<unknown>[]): unknown {
  const errors = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected').map((o) => o.reason);
  const secondary = (e: unknown) =>
    e instanceof Error && (e.name === 'AbortError' || (e as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE');
  return errors.find((e) => !secondary(e)) ?? errors[0];
}
