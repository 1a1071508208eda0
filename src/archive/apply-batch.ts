// Encodes parsed tar entries and their content into batches for the native applier
// (format: native/apply.cc). A batch is one preallocated buffer; content is copied in, so
// the parser's input chunks can go as soon as write() returns. Big files span batches.
import type { TarHeader, TarSink } from './tar-parse.js';

const OP_ENTRY = 1;
const OP_DATA = 2;
const FIXED = 1 + 1 + 5 * 4 + 8 + 4 + 8 + 4 + 8 + 4 + 4 + 4; // entry op without its strings
const DATA_HEAD = 1 + 4;

export interface Batch {
  buf: Buffer;
  length: number;
}

export class Batcher implements TarSink {
  /** Batches filled and not yet taken. */
  readonly ready: Batch[] = [];
  private cur: Buffer;
  private used = 0;
  private ops = 0;
  private free: Buffer[] = [];

  /**
   * @param size bytes per batch
   * @param maxOps entries per batch at most: a batch of many small files should not wait
   *   for a lot of parsing before the disk work starts
   */
  constructor(
    private readonly size = 4 << 20,
    private readonly maxOps = 2048,
  ) {
    this.cur = Buffer.allocUnsafe(size);
  }

  entry(h: TarHeader): void {
    let need = FIXED + h.name.length + h.linkname.length;
    for (const [k, v] of h.xattrs) need += 8 + Buffer.byteLength(k) + v.length;
    if (this.used + need > this.cur.length) this.rotate(need);
    const b = this.cur;
    let o = this.used;
    o = b.writeUInt8(OP_ENTRY, o);
    o = b.writeUInt8(h.type.charCodeAt(0), o);
    o = b.writeUInt32LE(h.mode >>> 0, o);
    o = b.writeUInt32LE(h.uid >>> 0, o);
    o = b.writeUInt32LE(h.gid >>> 0, o);
    o = b.writeUInt32LE(h.devmajor >>> 0, o);
    o = b.writeUInt32LE(h.devminor >>> 0, o);
    o = b.writeDoubleLE(h.mtimeSec, o);
    o = b.writeUInt32LE(h.mtimeNsec, o);
    o = b.writeDoubleLE(h.atimeSec, o);
    o = b.writeUInt32LE(h.atimeNsec, o);
    o = b.writeDoubleLE(h.size, o);
    o = putBytes(b, o, h.name);
    o = putBytes(b, o, h.linkname);
    o = b.writeUInt32LE(h.xattrs.length, o);
    for (const [k, v] of h.xattrs) {
      o = putBytes(b, o, Buffer.from(k));
      o = putBytes(b, o, v);
    }
    this.used = o;
    if (++this.ops >= this.maxOps) this.rotate();
  }

  data(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.cur.length - this.used <= DATA_HEAD) this.rotate();
      const n = Math.min(chunk.length - off, this.cur.length - this.used - DATA_HEAD);
      let o = this.cur.writeUInt8(OP_DATA, this.used);
      o = this.cur.writeUInt32LE(n, o);
      chunk.copy(this.cur, o, off, off + n);
      this.used = o + n;
      off += n;
    }
  }

  /** Queues the current batch (if it has anything) and starts a new one of at least `min` bytes. */
  rotate(min = 0): void {
    if (this.used > 0) this.ready.push({ buf: this.cur, length: this.used });
    this.cur = min > this.size ? Buffer.allocUnsafe(min) : (this.free.pop() ?? Buffer.allocUnsafe(this.size));
    this.used = 0;
    this.ops = 0;
  }

  /** Gives a batch's buffer back once the native side is done with it. */
  recycle(b: Batch): void {
    if (b.buf.length === this.size && this.free.length < 2) this.free.push(b.buf);
  }
}

function putBytes(b: Buffer, o: number, v: Buffer): number {
  o = b.writeUInt32LE(v.length, o);
  return o + v.copy(b, o);
}
