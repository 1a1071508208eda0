// Deterministic pseudo-random bytes for tests: an AES-256-CTR keystream keyed by a seed
// string. Fast (GB/s), incompressible, identical on every run, and never held whole in
// memory when streamed.
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const CHUNK = 1 << 20;

function keystream(seed: string) {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
}

/** `size` bytes for `seed`, as one buffer (small sizes only). */
export function seededBytes(seed: string, size: number): Buffer {
  return keystream(seed).update(Buffer.alloc(size));
}

/** `size` bytes for `seed`, as a stream of chunks of at most `chunk` bytes. Same bytes as seededBytes. */
export function seededStream(seed: string, size: number, chunk = CHUNK): Readable {
  const cipher = keystream(seed);
  const zeros = Buffer.alloc(chunk);
  let left = size;
  return new Readable({
    read() {
      if (left === 0) return void this.push(null);
      const n = Math.min(chunk, left);
      left -= n;
      this.push(cipher.update(zeros.subarray(0, n)));
    },
  });
}

/** Writes seededStream(seed, size) to `path` and returns its sha256 digest. */
export async function writeSeededFile(path: string, seed: string, size: number): Promise<`sha256:${string}`> {
  const hash = createHash('sha256');
  await pipeline(
    seededStream(seed, size),
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const c of chunks) {
        hash.update(c);
        yield c;
      }
    },
    createWriteStream(path),
  );
  return `sha256:${hash.digest('hex')}`;
}
