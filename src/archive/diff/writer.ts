// Turns a sequence of diff entries into the bytes of a tar archive, as a stream.
//
// - Hardlinks: the first entry seen for an inode carries the content; later entries of
//   the same inode become hardlink entries pointing at it (the order is the differ's, so
//   the result is deterministic).
// - Small files are read in batches, each batch in one native call off the main thread
//   (native/readfiles.cc), a few batches ahead of what is being written: a layer of 10 000
//   small files would otherwise cost tens of thousands of thread-pool round trips (or
//   block the event loop on every read when the page cache is cold). Entries are packed
//   with their headers into ~1 MiB chunks. Large files stream in 1 MiB reads.
// - A file that shrank since it was scanned (the tree may be live) fails the stream
//   rather than yield a tar whose header lies about the size.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { TslayerError, isErrno } from '../../errors.js';
import { readFiles } from '../../native/index.js';
import type { DiffEntry } from './entry.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from './header.js';

const CHUNK = 1 << 20;
/** Files up to this size are read in batches; larger ones are streamed. */
const SMALL_FILE = 256 << 10;
/** A batch ends after this many entries or this many bytes of small-file content. */
const BATCH_ENTRIES = 256;
const BATCH_BYTES = 4 << 20;
/** Batches read ahead of the one being written. */
const READ_AHEAD = 3;
/** Padding comes from here (the chunks are copied when packed): no allocation per file. */
const ZEROS = Buffer.alloc(512);

export interface TarStats {
  entries: number;
  /** Bytes of file content written. */
  contentBytes: number;
}

/**
 * The tar of `entries`, ended by two zero blocks. `stats` is filled in as it goes.
 * `cleanup` runs once the last content byte was read (or the stream failed or was
 * destroyed): file contents are read after their entries were listed, so whatever makes
 * the sources readable (a temporary mount) must outlive the listing.
 */
export function tarStream(
  entries: AsyncIterable<DiffEntry>,
  stats: TarStats = { entries: 0, contentBytes: 0 },
  cleanup?: () => Promise<void>,
): Readable {
  return Readable.from(generate(entries, stats, cleanup), { objectMode: false, highWaterMark: CHUNK });
}

interface Batch {
  entries: DiffEntry[];
  /** Content of the batch's small files, concatenated in entry order. */
  small: Promise<Buffer>;
}

const isSmall = (e: DiffEntry): boolean => e.header.type === 'file' && e.header.size > 0 && e.header.size <= SMALL_FILE;

async function* generate(entries: AsyncIterable<DiffEntry>, stats: TarStats, cleanup?: () => Promise<void>): AsyncGenerator<Buffer> {
  const it = entries[Symbol.asyncIterator]();
  const firstPath = new Map<string, string>();
  let exhausted = false;

  // Pulls the next entries (in order: batches are formed one after the other) and starts
  // reading their small files. Hardlinks are resolved here, in entry order.
  const form = async (): Promise<Batch | undefined> => {
    const list: DiffEntry[] = [];
    const paths: string[] = [];
    const sizes: number[] = [];
    let bytes = 0;
    while (!exhausted && list.length < BATCH_ENTRIES && bytes < BATCH_BYTES) {
      const r = await it.next();
      if (r.done) {
        exhausted = true;
        break;
      }
      const entry = linkRepeat(r.value, firstPath);
      list.push(entry);
      if (isSmall(entry)) {
        if (entry.source === undefined) throw new TslayerError('INTERNAL', `tar entry ${entry.header.name}: no content source`);
        paths.push(entry.source);
        sizes.push(entry.header.size);
        bytes += entry.header.size;
      }
    }
    if (list.length === 0) return undefined;
    const small = paths.length > 0 ? readFiles(paths, sizes).catch((e) => Promise.reject(changed(e))) : Promise.resolve(Buffer.alloc(0));
    small.catch(() => undefined); // observed when the batch is written
    return { entries: list, small };
  };
  let chain: Promise<unknown> = Promise.resolve();
  const ahead: Array<Promise<Batch | undefined>> = [];
  const refill = (): void => {
    while (ahead.length < READ_AHEAD) {
      const p = chain.then(() => (exhausted ? undefined : form()));
      p.catch(() => undefined);
      chain = p.catch(() => undefined);
      ahead.push(p);
    }
  };

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

  try {
    for (;;) {
      refill();
      const batch = await ahead.shift()!;
      if (batch === undefined) break;
      const small = await batch.small;
      let off = 0;
      for (const entry of batch.entries) {
        const { header } = entry;
        add(encodeHeader(header));
        stats.entries++;
        if (header.type === 'file' && header.size > 0) {
          if (isSmall(entry)) {
            add(small.subarray(off, off + header.size));
            off += header.size;
          } else {
            if (pendingBytes > 0) yield flush();
            yield* readLarge(entry.source!, header.size);
          }
          stats.contentBytes += header.size;
          const pad = padding(header.size);
          if (pad > 0) add(ZEROS.subarray(0, pad));
        }
        if (pendingBytes >= CHUNK) yield flush();
      }
    }
  } finally {
    // Stopped early (error or destroyed stream): let the walk end too.
    if (!exhausted) await it.return?.(undefined).catch(() => undefined);
    // Reads still in flight (an error stopped us) must end before their sources go away.
    await Promise.allSettled(ahead);
    await cleanup?.();
  }
  add(END_OF_ARCHIVE);
  yield flush();
}

/** The entry as written: a repeat of an inode already in the layer becomes a hardlink to its first name. */
function linkRepeat(entry: DiffEntry, firstPath: Map<string, string>): DiffEntry {
  if (entry.inode === undefined) return entry;
  const first = firstPath.get(entry.inode);
  if (first === undefined) {
    firstPath.set(entry.inode, entry.header.name);
    return entry;
  }
  // No content, and the xattrs live on the inode the first name already carries.
  const { xattrs: _x, devmajor: _ma, devminor: _mi, ...rest } = entry.header;
  return { header: { ...rest, type: 'link', linkname: first, size: 0 } };
}

function changed(e: unknown): Error {
  const path = (e as NodeJS.ErrnoException).path ?? 'a file';
  if (isErrno(e, 'ENODATA') || isErrno(e, 'ENOENT') || isErrno(e, 'ELOOP')) {
    return new TslayerError(
      'FAILED_PRECONDITION',
      `${path} changed while the layer was being written (removed, replaced or shortened since it was scanned); stop writers and retry`,
      { cause: e },
    );
  }
  return e as Error;
}

function shrank(path: string, want: number, got: number): TslayerError {
  return new TslayerError(
    'FAILED_PRECONDITION',
    `${path} changed while the layer was being written (${want} bytes when scanned, ${got} now); stop writers and retry`,
  );
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
