// Writing an image archive: a tar file built entry by entry from streams, written under a
// temporary name and renamed into place when complete (a reader never sees half a tar).
import { open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

export interface TarWriter {
  /** Adds a file of exactly `size` bytes read from `source` (or held in `source` when a Buffer). */
  add(name: string, size: number, source: Readable | Buffer): Promise<void>;
  /** Adds a directory entry (readers that extract the tar get its mode right). */
  dir(name: string): Promise<void>;
}

// Fixed metadata makes the same image export to the same bytes.
const MTIME = new Date(0);

export async function writeTarFile(path: string, produce: (w: TarWriter) => Promise<void>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  const fh = await open(tmp, 'w', 0o644);
  const pack = tar.pack();
  const written = pipeline(pack, fh.createWriteStream());
  written.catch(() => {}); // awaited below
  try {
    await produce({
      add: (name, size, source) =>
        new Promise<void>((resolve, reject) => {
          const header = { name, size, mode: 0o644, mtime: MTIME, uid: 0, gid: 0, type: 'file' as const };
          if (Buffer.isBuffer(source)) {
            pack.entry(header, source, (err) => (err ? reject(err) : resolve()));
            return;
          }
          const entry = pack.entry(header, (err) => (err ? reject(err) : resolve()));
          pipeline(source, entry).catch(reject);
        }),
      dir: (name) =>
        new Promise<void>((resolve, reject) => {
          const header = { name: name.endsWith('/') ? name : `${name}/`, mode: 0o755, mtime: MTIME, uid: 0, gid: 0, type: 'directory' as const };
          pack.entry(header, Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
        }),
    });
    pack.finalize();
    await written;
    await rename(tmp, path);
  } catch (e) {
    pack.destroy();
    await written.catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}
