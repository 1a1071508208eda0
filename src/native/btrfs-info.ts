// Which btrfs filesystem and subvolume a path is in (ioctls BTRFS_IOC_FS_INFO and
// BTRFS_IOC_INO_LOOKUP): what names a subvolume's qgroup in /sys/fs/btrfs.
import { binding } from './binding.js';
import { sysError } from './errno.js';

export interface SubvolInfo {
  /** The subvolume (tree) id: 5 for the top level, >= 256 for the others. */
  id: number;
  /** The filesystem's fsid as sysfs names it (/sys/fs/btrfs/<fsid>). */
  fsid: string;
}

export async function subvolInfo(path: string): Promise<SubvolInfo> {
  const err = new Error();
  const r = await binding.subvolInfo(path);
  if (typeof r === 'number') throw sysError(err, r, 'ioctl_btrfs_ino_lookup', path);
  return r;
}
