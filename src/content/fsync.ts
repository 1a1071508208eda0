// Durability helpers: a rename is only durable once the directory holding the new
// name is fsync'd (ext4/xfs can otherwise lose the entry after a power cut).
import { open } from 'node:fs/promises';
import { isErrno } from '../errors.js';
import { renameat2, RENAME } from '../native/index.js';

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Moves a finished, fsync'd file to its content address without ever replacing an
 * existing blob (cacache's move-file: the first writer wins, a second writer of the
 * same digest is harmless and just drops its copy). Readers of the existing blob
 * keep their inode. Returns false when the target already existed.
 */
export async function moveIntoPlace(from: string, to: string): Promise<boolean> {
  try {
    await renameat2(from, to, RENAME.NOREPLACE);
    return true;
  } catch (e) {
    if (isErrno(e, 'EEXIST')) return false;
    // Filesystems without RENAME_NOREPLACE: link(2) also refuses to replace.
    if (!isErrno(e, 'EINVAL') && !isErrno(e, 'ENOSYS') && !isErrno(e, 'EOPNOTSUPP')) throw e;
    const { link, unlink } = await import('node:fs/promises');
    try {
      await link(from, to);
      return true;
    } catch (e2) {
      if (isErrno(e2, 'EEXIST')) return false;
      throw e2;
    } finally {
      await unlink(from).catch(() => {});
    }
  }
}
