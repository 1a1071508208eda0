// Turns a sequence of diff entries into the bytes of a tar archive, as a stream.
//
// - Hardlinks: the first entry seen for an inode carries the content; later entries of
//   the same inode become hardlink entries pointing at it (the order is the differ's, so
//   the result is deterministic).
// - Small files are read synchronously and packed together with their headers into ~1 MiB
//   chunks: a layer of 10 000 small files would otherwise cost tens of thousands of
//   thread-pool round trips and stream writes. Large files stream in 1 MiB reads.
// - A file that shrank since it was scanned (the tree may be live) fails the stream
//   rather than yield a tar whose header lies about the size.
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { TslayerError } from '../../errors.js';
import type { DiffEntry } from './entry.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from './header.js';

const CHUNK = 1 << 20;
/** Files up to this size are read in one synchronous call. */
const SMALL_FILE = 256 << 10;

export interface TarStats {
  entries: number;
  /** Bytes of file content written. */
  contentBytes: number;
}

/** The tar of `entries`, ended by two zero blocks. `stats` is filled in as it goes. */
export function tarStream(entries: AsyncIterable<DiffEntry>, stats: TarStats = { entries: 0, contentBytes: 0 }): Readable {
  return Readable.from(generate(entries, stats), { objectMode: false, highWaterMark: CHUNK });
}

async function* generate(entries: AsyncIterable<DiffEntry>, stats: TarStats): AsyncGenerator<Buffer> {
  const firstPath = new Map<string, string>();
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const add = (b: Buffer): void => {
    pending.push(b);
    pendingBytes += b.length;
  };
  const flush = (): Buffer => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };

  for await (const entry of entries) {
    let header = entry.header;
    if (entry.inode !== undefined) {
      const first = firstPath.get(entry.inode);
      if (first === undefined) {
        firstPath.set(entry.inode, header.name);
      } else {
        // Same inode as an earlier entry: a hardlink, no content, xattrs live on the inode.
        const { xattrs: _x, devmajor: _ma, devminor: _mi, ...rest } = header;
        header = { ...rest, type: 'link', linkname: first, size: 0 };
      }
    }
    add(encodeHeader(header));
    stats.entries++;
    if (header.type === 'file' && header.size > 0) {
      if (entry.source === undefined) throw new TslayerError('INTERNAL', `tar entry ${header.name}: no content source`);
      if (header.size <= SMALL_FILE) {
        add(readSmall(entry.source, header.size));
      } else {
        if (pendingBytes > 0) yield flush();
        yield* readLarge(entry.source, header.size);
      }
      stats.contentBytes += header.size;
      const pad = padding(header.size);
      if (pad > 0) add(Buffer.alloc(pad));
    }
    if (pendingBytes >= CHUNK) yield flush();
  }
  add(END_OF_ARCHIVE);
  yield flush();
}

function shrank(path: string, want: number, got: number): TslayerError {
  return new TslayerError(
    'FAILED_PRECONDITION',
    `${path} changed while the layer was being written (${want} bytes when scanned, ${got} now); stop writers and retry`,
  );
}

function readSmall(path: string, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) throw shrank(path, size, off);
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  return buf;
}

async function* readLarge(path: string, size: number): AsyncGenerator<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    let off = 0;
    while (off < size) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - off));
      let filled = 0;
      while (filled < buf.length) {
        const { bytesRead } = await fh.read(buf, filled, buf.length - filled, off + filled);
        if (bytesRead === 0) throw shrank(path, size, off + filled);
        filled += bytesRead;
      }
      off += filled;
      yield buf;
    }
  } finally {
    await fh.close();
  }
}
