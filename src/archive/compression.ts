// Layer compression: recognise it from the first bytes, and stream through it either way.
//
// gzip goes through Node's zlib with 1 MiB output chunks: with the default 16 KiB chunks
// inflate runs at ~140 MB/s here, with 1 MiB at ~545 MB/s (MACHINE.md), because every
// chunk is one hand-off between the thread pool and the JS thread.
import { PassThrough, type Readable, type Transform } from 'node:stream';
import { constants as zc, createGunzip, createGzip } from 'node:zlib';
import { CompressStream, DecompressStream } from 'zstd-napi';
import { invalidArgument } from '../errors.js';

/** Same values as image/mediatype's Compression (archive sits below image, so it is not imported). */
export type Compression = 'gzip' | 'zstd' | 'none';

const CHUNK = 1 << 20;
const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** Looks at the magic bytes: gzip 1f 8b, zstd 28 b5 2f fd, anything else is taken as uncompressed. */
export function detectCompression(firstBytes: Buffer): Compression {
  const starts = (magic: number[]) => firstBytes.length >= magic.length && magic.every((b, i) => firstBytes[i] === b);
  if (starts(GZIP_MAGIC)) return 'gzip';
  if (starts(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

/** A Transform from compressed bytes to the uncompressed stream ('none': a PassThrough). */
export function decompressStream(c: Compression): Transform {
  switch (c) {
    case 'gzip':
      return createGunzip({ chunkSize: CHUNK });
    case 'zstd':
      return new DecompressStream();
    case 'none':
      return new PassThrough({ highWaterMark: CHUNK });
    default:
      throw invalidArgument(`unknown compression ${String(c)}`);
  }
}

/** A Transform that compresses. `level`: gzip 1-9 (default 6), zstd 1-22 (default 3). */
export function compressStream(c: Compression, opts: { level?: number } = {}): Transform {
  switch (c) {
    case 'gzip':
      return createGzip({ chunkSize: CHUNK, level: opts.level ?? zc.Z_DEFAULT_COMPRESSION });
    case 'zstd':
      return new CompressStream(opts.level === undefined ? {} : { compressionLevel: opts.level });
    case 'none':
      return new PassThrough({ highWaterMark: CHUNK });
    default:
      throw invalidArgument(`unknown compression ${String(c)}`);
  }
}

/**
 * Peeks at the first bytes of `src` and returns the compression found there together
 * with the uncompressed stream. Nothing is consumed before the decompressor sees it.
 */
export async function openDecompressed(src: Readable): Promise<{ compression: Compression; stream: Readable }> {
  const { head, ended } = await peek(src, ZSTD_MAGIC.length);
  const compression = detectCompression(head);
  const d = decompressStream(compression);
  if (ended) {
    // Too short to put back (unshift after 'end' is an error): feed what there was.
    d.end(head);
    return { compression, stream: d };
  }
  src.on('error', (e) => d.destroy(e));
  return { compression, stream: src.pipe(d) };
}

/**
 * Reads until at least `n` bytes (or the end) are buffered, then puts them back. The
 * unshift happens inside the 'readable' handler: deferred to a later tick, the stream
 * could already have emitted 'end' for the bytes we took out.
 */
async function peek(src: Readable, n: number): Promise<{ head: Buffer; ended: boolean }> {
  const chunks: Buffer[] = [];
  let have = 0;
  return new Promise((resolve, reject) => {
    const onReadable = () => {
      let c: Buffer | null;
      while (have < n && (c = src.read() as Buffer | null) !== null) {
        chunks.push(c);
        have += c.length;
      }
      if (have < n) return;
      cleanup();
      const head = Buffer.concat(chunks);
      src.unshift(head);
      resolve({ head, ended: false });
    };
    const onEnd = () => {
      cleanup();
      resolve({ head: Buffer.concat(chunks), ended: true });
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const cleanup = () => {
      src.off('readable', onReadable);
      src.off('end', onEnd);
      src.off('error', onError);
    };
    src.on('readable', onReadable);
    src.on('end', onEnd);
    src.on('error', onError);
  });
}
