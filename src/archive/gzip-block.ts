// Compressing one block as a complete gzip member, choosing how hard to try from the
// block's own bytes (see parallel-gzip.ts for why). Pure and synchronous: it runs in the
// gzip worker threads, and on the calling thread for a layer too small to need them.
import { deflateRawSync, gzipSync, constants as zc } from 'node:zlib';

const SAMPLE = 4 << 10;
const SAMPLES = 4;
/** Relative size of the deflated samples from which a block is stored / only run-length coded. */
const STORE_FROM = 0.97;
// Measured here: 1 MiB blocks of a tar of /usr/lib sample at <= 0.65 (and deflate well);
// a tar of small random files (their headers and padding compress) samples at 0.74-0.95.
const RLE_FROM = 0.7;

/** How `block` is best compressed at `level`, judged from a few samples. */
export function blockPlan(block: Uint8Array, level: number): { level: number; strategy: number } {
  const plain = { level, strategy: zc.Z_DEFAULT_STRATEGY };
  if (level === 0 || block.length < SAMPLE * SAMPLES * 2) return plain;
  const step = Math.floor(block.length / SAMPLES);
  const sample = Buffer.allocUnsafe(SAMPLE * SAMPLES);
  for (let i = 0; i < SAMPLES; i++) sample.set(block.subarray(i * step, i * step + SAMPLE), i * SAMPLE);
  const ratio = deflateRawSync(sample, { level: 1 }).length / sample.length;
  if (ratio >= STORE_FROM) return { level: 0, strategy: zc.Z_DEFAULT_STRATEGY };
  if (ratio >= RLE_FROM) return { level, strategy: zc.Z_RLE };
  return plain;
}

/** One gzip member holding `block`. Same bytes for the same block and level, always. */
export function gzipBlockSync(block: Uint8Array, level: number): Buffer {
  const plan = blockPlan(block, level);
  return gzipSync(block, { ...plan, memLevel: 9, chunkSize: Math.max(block.length + (block.length >> 3) + 1024, 64 << 10) });
}
