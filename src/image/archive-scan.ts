// One streaming pass over an image archive (oci-archive or `docker save` tar, possibly
// gzip- or zstd-compressed): every file that can be a blob goes straight into the content
// store as it passes, the few small metadata documents are kept in memory, symlinks are
// noted. Nothing of a layer is ever held in memory, and the archive is read exactly once;
// the importers then work from the content store.
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

type Entry = AsyncIterable<unknown> & { header: tar.Header };
import { decompressStream, detectCompression } from '../archive/compression.js';
import type { BlobInfo, ContentStore } from '../content/index.js';
import { TslayerError, invalidArgument } from '../errors.js';
import { isDigest, type Digest } from './digest.js';
import { MAX_MANIFEST_BYTES } from './manifest.js';

/** Top-level metadata files of both archive formats, read into memory. */
const DOCUMENTS = new Set(['manifest.json', 'index.json', 'oci-layout', 'repositories']);

export interface ArchiveScan {
  /** Archive path (normalised, no leading './') → the blob its bytes became. */
  files: Map<string, BlobInfo>;
  /** Symlink path → its target path (normalised, relative to the archive root). */
  links: Map<string, string>;
  /** The top-level metadata documents found (manifest.json, index.json, oci-layout, repositories). */
  documents: Map<string, Buffer>;
}

/** Reads `path` once, storing its blobs in `content`. */
export async function scanArchive(content: ContentStore, path: string, signal?: AbortSignal): Promise<ArchiveScan> {
  const scan: ArchiveScan = { files: new Map(), links: new Map(), documents: new Map() };
  const compression = await sniff(path);
  const fh = await open(path, 'r');
  const source = fh.createReadStream({ highWaterMark: 1 << 20 });
  const extract = tar.extract();
  const stages: NodeJS.ReadWriteStream[] = compression === 'none' ? [] : [decompressStream(compression)];
  const feeding = pipeline([source, ...stages, extract] as unknown as [Readable, NodeJS.WritableStream], { signal });
  feeding.catch(() => {}); // awaited below; an early failure also ends the iteration
  try {
    for await (const entry of extract) {
      const name = normalise(entry.header.name, path);
      const type = entry.header.type;
      if (type === 'file' || type === 'contiguous-file') {
        if (name !== null) await takeFile(content, scan, name, entry, path);
        else await drain(entry);
      } else {
        if ((type === 'symlink' || type === 'link') && name !== null && entry.header.linkname) {
          // A symlink is relative to its directory; a hard link names a path from the root.
          const target = type === 'symlink' ? posix.join(posix.dirname(name), entry.header.linkname) : entry.header.linkname;
          const t = normalise(target, path);
          if (t !== null) scan.links.set(name, t);
        }
        await drain(entry);
      }
    }
    await feeding;
  } catch (e) {
    extract.destroy();
    await feeding.catch(() => {});
    if (e instanceof TslayerError) throw e;
    throw invalidArgument(`${path}: not a readable image archive: ${(e as Error).message}`);
  } finally {
    await fh.close().catch(() => {});
  }
  return scan;
}

/** The blob a path in the archive names, following symlinks (docker save links repeated layers). */
export function lookup(scan: ArchiveScan, name: string): BlobInfo | undefined {
  let p = normalise(name, 'archive');
  for (let hops = 0; p !== null && hops < 16; hops++) {
    const f = scan.files.get(p);
    if (f) return f;
    p = scan.links.get(p) ?? null;
  }
  return undefined;
}

async function takeFile(content: ContentStore, scan: ArchiveScan, name: string, entry: Entry, path: string): Promise<void> {
  if (DOCUMENTS.has(name)) {
    scan.documents.set(name, await readSmall(entry, `${path}: ${name}`));
    return;
  }
  // Legacy per-layer metadata of `docker save` (<id>/json, <id>/VERSION): not blobs.
  const base = posix.basename(name);
  if (name.includes('/') && (base === 'json' || base === 'VERSION')) {
    await drain(entry);
    return;
  }
  const stream = Readable.from(entry);
  // OCI blobs name their own digest: the store checks it. Anything else is hashed.
  const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
  const digest = m ? `${m[1]}:${m[2]}` : undefined;
  let info: BlobInfo;
  if (digest !== undefined && isDigest(digest)) {
    info = await content.put(stream, { digest: digest as Digest, size: entry.header.size ?? 0 });
  } else {
    info = await content.putUnknown(stream);
  }
  scan.files.set(name, info);
}

async function readSmall(entry: Entry, what: string): Promise<Buffer> {
  if ((entry.header.size ?? 0) > MAX_MANIFEST_BYTES) throw invalidArgument(`${what}: over ${MAX_MANIFEST_BYTES} bytes`);
  const chunks: Buffer[] = [];
  for await (const c of entry) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function drain(entry: Entry): Promise<void> {
  for await (const _ of entry) {
    // discard
  }
}

/** `./a/b` → `a/b`; refuses absolute paths and `..` (returns null: such entries are ignored). */
function normalise(name: string, _path: string): string | null {
  const p = posix.normalize(name.replace(/^\/+/, '')).replace(/\/+$/, '');
  if (p === '.' || p === '' || p.startsWith('../') || p === '..') return null;
  return p.startsWith('./') ? p.slice(2) : p;
}

/** The compression of the archive file itself (`docker save | gzip` is common). */
async function sniff(path: string): Promise<'gzip' | 'zstd' | 'none'> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 0);
    return detectCompression(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
