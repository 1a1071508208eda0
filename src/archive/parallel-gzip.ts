// Gzip on every core: the input is cut into fixed-size blocks, each block is compressed
// as a complete gzip member by zlib on libuv's thread pool (several at once), and the
// members are written in input order. A sequence of gzip members is itself a valid gzip
// stream (RFC 1952 §2.2) that every reader we care about decompresses as one: Go's
// compress/gzip (containerd, podman, skopeo, umoci), zlib/Node, GNU gzip, pigz.
//
// Why: one deflate stream runs on one core, and on the VMs tslayer is measured on that is
// ~50-90 MB/s; a commit of a 100 MB file would spend 1-2 s in it alone. With blocks
// compressed in parallel, both cores work. Blocks of 1 MiB cost <0.1% in ratio (deflate's
// window is only 32 KiB) and 18 bytes of member header+trailer each.
//
// Blocks that deflate cannot shrink much (already compressed or encrypted data: a jar, a
// video, random bytes) are not searched for matches that are not there, which is where
// deflate spends its time (~50 MB/s per core here). Four 4 KiB samples of each block are
// deflated at level 1 first (~1% of the block's cost):
//   samples shrink < 3%    -> the block is stored (a memcpy and a CRC)
//   samples shrink < 20%   -> run-length matching only (Z_RLE): keeps what such blocks do
//                             compress (tar headers, zero padding between small files)
//                             at a third of the cost
//   otherwise              -> the requested level
// What the samples misjudge costs a little size, never correctness.
//
// The output is deterministic: same input, level and block size give the same bytes
// (zlib writes mtime 0 and a fixed OS byte in each member header; the store-or-deflate
// choice depends on the block's bytes only).
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { deflateRawSync, gzip, constants as zc } from 'node:zlib';

export interface ParallelGzipOptions {
  /** zlib level 0-9 (default 6, zlib's and Go's default). */
  level?: number;
  /** Uncompressed bytes per gzip member (default 1 MiB). */
  blockSize?: number;
  /** Members compressed at once (default: the number of cores). */
  concurrency?: number;
}

export const DEFAULT_GZIP_LEVEL = 6;
const DEFAULT_BLOCK = 1 << 20;

const SAMPLE = 4 << 10;
const SAMPLES = 4;
/** Relative size of the deflated samples from which a block is stored / only run-length coded. */
const STORE_FROM = 0.97;
const RLE_FROM = 0.8;

/** How `block` is best compressed at `level`, judged from a few samples (see the file comment). */
export function blockPlan(block: Buffer, level: number): { level: number; strategy: number } {
  const plain = { level, strategy: zc.Z_DEFAULT_STRATEGY };
  if (level === 0 || block.length < SAMPLE * SAMPLES * 2) return plain;
  const step = Math.floor(block.length / SAMPLES);
  const parts: Buffer[] = [];
  for (let i = 0; i < SAMPLES; i++) parts.push(block.subarray(i * step, i * step + SAMPLE));
  const sample = Buffer.concat(parts);
  const ratio = deflateRawSync(sample, { level: 1 }).length / sample.length;
  if (ratio >= STORE_FROM) return { level: 0, strategy: zc.Z_DEFAULT_STRATEGY };
  if (ratio >= RLE_FROM) return { level, strategy: zc.Z_RLE };
  return plain;
}

function gzipBlock(block: Buffer, level: number): Promise<Buffer> {
  const plan = blockPlan(block, level);
  return new Promise((resolve, reject) =>
    gzip(
      block,
      { ...plan, memLevel: 9, chunkSize: Math.max(block.length + (block.length >> 3) + 1024, 64 << 10) },
      (err, out) => (err ? reject(err) : resolve(out)),
    ),
  );
}

/** A Transform from uncompressed bytes to a multi-member gzip stream, compressed in parallel. */
export function parallelGzip(opts: ParallelGzipOptions = {}): Transform {
  const level = opts.level ?? DEFAULT_GZIP_LEVEL;
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK;
  const concurrency = Math.max(1, opts.concurrency ?? availableParallelism());
  let parts: Buffer[] = [];
  let partBytes = 0;
  // Members in flight, oldest first; each resolves to its compressed bytes.
  const inflight: Array<Promise<Buffer>> = [];
  let members = 0;

  const cut = (): Buffer => {
    const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, partBytes);
    const block = all.subarray(0, blockSize);
    const rest = all.subarray(blockSize);
    parts = rest.length > 0 ? [rest] : [];
    partBytes = rest.length;
    return block;
  };

  const start = (block: Buffer): void => {
    const p = gzipBlock(block, level);
    p.catch(() => undefined); // observed when it reaches the head of the queue
    inflight.push(p);
    members++;
  };

  // Pushes finished members in order while more than `keep` are in flight.
  const drainTo = async (t: Transform, keep: number): Promise<void> => {
    while (inflight.length > keep) t.push(await inflight.shift()!);
  };

  return new Transform({
    highWaterMark: blockSize,
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      parts.push(chunk);
      partBytes += chunk.length;
      if (partBytes < blockSize) return cb();
      (async () => {
        while (partBytes >= blockSize) {
          start(cut());
          await drainTo(this, concurrency);
        }
      })().then(() => cb(), cb);
    },
    flush(cb: TransformCallback) {
      (async () => {
        if (partBytes > 0 || members === 0) start(cut()); // an empty input still makes one (empty) member
        await drainTo(this, 0);
      })().then(() => cb(), cb);
    },
  });
}
