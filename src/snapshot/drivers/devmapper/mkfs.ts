/**
 * The filesystem of a base device. It is made once per pool, filesystem and size; every
 * root snapshot is a thin snapshot of it (Docker's devicemapper "base device"), so a root
 * prepare costs a create_snap, not a mkfs.
 *
 * ext4: inode tables and journal are written out now (lazy_itable_init=0,
 * lazy_journal_init=0, as containerd and Docker do): otherwise the kernel's lazy-init
 * thread would zero them later in every snapshot mounted read-write, each paying the
 * writes and the pool space again. nodiscard: a new thin device has nothing to discard.
 * xfs: -K likewise. Every snapshot shares the base's UUID, so xfs mounts need `nouuid`.
 *
 * Then the root is made what an empty layer is: mode 0755, owned by root, and without
 * mkfs's lost+found (which is no part of any image).
 */
import { chmod, chown, mkdtemp, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../../../errors.js';
import { mount, umount } from '../../../native/index.js';
import type { FsType } from './ids.js';
import { runTool } from './dmsetup.js';

export async function makeFilesystem(fs: FsType, device: string): Promise<void> {
  if (fs === 'ext4') {
    await runTool('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0', device], { device });
  } else {
    await runTool('mkfs.xfs', ['-q', '-f', '-K', device], { device });
  }
}

/** Mount options every mount of a snapshot of this filesystem needs. */
export function fsMountOptions(fs: FsType): string[] {
  return fs === 'xfs' ? ['nouuid'] : [];
}

/** Gives the new filesystem on `device` an empty layer's root (mounted on a scratch dir under `tmpDir`). */
export async function tidyRoot(fs: FsType, device: string, tmpDir: string): Promise<void> {
  const dir = await mkdtemp(join(tmpDir, 'devmapper-base-'));
  try {
    await mount(device, dir, fs, 0, fsMountOptions(fs).join(',') || null);
    try {
      await rmdir(join(dir, 'lost+found')).catch((e) => {
        if (!isErrno(e, 'ENOENT')) throw e;
      });
      await chown(dir, 0, 0);
      await chmod(dir, 0o755);
    } finally {
      await umount(dir);
    }
  } finally {
    await rmdir(dir).catch(() => undefined);
  }
}
