// Gzip on every core: the input is cut into fixed-size blocks, each block is compressed
// as a complete gzip member by zlib in a worker thread (one per core), and the members
// are written in input order. A sequence of gzip members is itself a valid gzip
// stream (RFC 1952 §2.2) that every reader we care about decompresses as one: Go's
// compress/gzip (containerd, podman, skopeo, umoci), zlib/Node, GNU gzip, pigz.
//
// Why: one deflate stream runs on one core, and on the VMs tslayer is measured on that is
// ~50-90 MB/s; a commit of a 100 MB file would spend 1-2 s in it alone. With blocks
// compressed in parallel, both cores work. Blocks of 1 MiB cost <0.1% in ratio (deflate's
// window is only 32 KiB) and 18 bytes of member header+trailer each. Worker threads rather
// than zlib's async API: that runs on libuv's thread pool, which the same commit needs for
// its file reads, blob writes and the applier's batches, and its per-call bookkeeping on
// the main thread (~4 ms per 1 MiB block here) competes with building the tar. A layer
// smaller than one block is compressed on the calling thread: no worker is started.
//
// Blocks that deflate cannot shrink much (already compressed or encrypted data: a jar, a
// video, random bytes) are not searched for matches that are not there, which is where
// deflate spends its time (~50 MB/s per core here). Four 4 KiB samples of each block are
// deflated at level 1 first (~1% of the block's cost):
//   samples shrink < 3%    -> the block is stored (a memcpy and a CRC)
//   samples shrink < 30%   -> run-length matching only (Z_RLE): keeps what such blocks do
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
import { Worker } from 'node:worker_threads';
import { gzipBlockSync } from './gzip-block.js';

export { blockPlan } from './gzip-block.js';

export interface ParallelGzipOptions {
  /** zlib level 0-9 (default 6, zlib's and Go's default). */
  level?: number;
  /** Uncompressed bytes per gzip member (default 1 MiB). */
  blockSize?: number;
  /** Worker threads (default: the number of cores). */
  concurrency?: number;
}

export const DEFAULT_GZIP_LEVEL = 6;
const DEFAULT_BLOCK = 1 << 20;
const WORKER = new URL('./gzip-worker.js', import.meta.url);

/** A few worker threads, each compressing one block at a time; jobs go to whichever is free. */
class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Array<{ id: number; block: Uint8Array; level: number }> = [];
  private readonly pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failed: Error | undefined;

  constructor(private readonly size: number) {}

  /** Starts every worker now (they take a while to boot), if not started yet. */
  warm(): void {
    while (this.workers.length < this.size) this.idle.push(this.spawn());
  }

  compress(block: Uint8Array, level: number): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    const p = new Promise<Buffer>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.queue.push({ id, block, level });
    this.pump();
    return p;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let w = this.idle.pop();
      if (!w && this.workers.length < this.size) w = this.spawn();
      if (!w) return;
      const job = this.queue.shift()!;
      // The block owns its ArrayBuffer (see cut()): move it rather than copy it.
      const whole = job.block.byteOffset === 0 && job.block.byteLength === job.block.buffer.byteLength;
      w.postMessage(job, whole ? [job.block.buffer as ArrayBuffer] : []);
    }
  }

  private spawn(): Worker {
    // --input-type (node -e) is refused for a worker loaded from a file.
    const w = new Worker(WORKER, { execArgv: process.execArgv.filter((a) => !a.startsWith('--input-type')) });
    w.on('message', (m: { id: number; out?: Uint8Array; error?: string }) => {
      const job = this.pending.get(m.id);
      this.pending.delete(m.id);
      this.idle.push(w);
      this.pump();
      if (!job) return;
      if (m.error !== undefined) job.reject(new Error(`gzip: ${m.error}`));
      else job.resolve(Buffer.from(m.out!.buffer, m.out!.byteOffset, m.out!.byteLength));
    });
    w.on('error', (e) => this.fail(e));
    w.on('exit', (code) => {
      if (code !== 0) this.fail(new Error(`gzip worker exited with status ${code}`));
    });
    this.workers.push(w);
    return w;
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const job of this.pending.values()) job.reject(this.failed);
    this.pending.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

/** A Transform from uncompressed bytes to a multi-member gzip stream, compressed in parallel. */
export function parallelGzip(opts: ParallelGzipOptions = {}): Transform {
  const level = opts.level ?? DEFAULT_GZIP_LEVEL;
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK;
  const concurrency = Math.max(1, opts.concurrency ?? availableParallelism());
  const pool = new WorkerPool(concurrency);
  let parts: Buffer[] = [];
  let partBytes = 0;
  // Members in flight, oldest first; each resolves to its compressed bytes.
  const inflight: Array<Promise<Buffer>> = [];
  let members = 0;

  // The next block, copied into memory of its own (so it can be handed to a worker
  // without another copy); what is left of the last part stays where it is.
  const cut = (): Buffer => {
    const size = Math.min(blockSize, partBytes);
    const block = Buffer.allocUnsafeSlow(size);
    let filled = 0;
    while (filled < size) {
      const p = parts[0]!;
      const take = Math.min(p.length, size - filled);
      p.copy(block, filled, 0, take);
      filled += take;
      if (take === p.length) parts.shift();
      else parts[0] = p.subarray(take);
    }
    partBytes -= size;
    return block;
  };

  const start = (block: Buffer, inline: boolean): void => {
    const p = inline ? Promise.resolve(gzipBlockSync(block, level)) : pool.compress(block, level);
    p.catch(() => undefined); // observed when it reaches the head of the queue
    inflight.push(p);
    members++;
  };

  // Pushes finished members in order while more than `keep` are in flight. Keeping one
  // more than there are workers lets each worker find its next block waiting.
  const drainTo = async (t: Transform, keep: number): Promise<void> => {
    while (inflight.length > keep) t.push(await inflight.shift()!);
  };

  return new Transform({
    highWaterMark: blockSize,
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      parts.push(chunk);
      partBytes += chunk.length;
      // Enough input that blocks are coming: boot the workers while the first one fills.
      if (members === 0 && partBytes >= blockSize / 4) pool.warm();
      if (partBytes < blockSize) return cb();
      (async () => {
        while (partBytes >= blockSize) {
          start(cut(), false);
          await drainTo(this, concurrency + 1);
        }
      })().then(() => cb(), cb);
    },
    flush(cb: TransformCallback) {
      (async () => {
        // An empty input still makes one (empty) member; a layer smaller than one block
        // is compressed right here rather than starting a worker for it.
        if (partBytes > 0 || members === 0) start(cut(), members === 0);
        await drainTo(this, 0);
      })().then(
        () => pool.close().then(() => cb(), cb),
        (e) => void pool.close().finally(() => cb(e)),
      );
    },
    destroy(err, cb) {
      pool.close().finally(() => cb(err));
    },
  });
}
