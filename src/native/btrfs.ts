// btrfs subvolume operations through ioctls (no `btrfs` binary on the hot path).
import { dirname, basename } from 'node:path';
import { binding } from './binding.js';
import { check } from './errno.js';

export async function subvolCreate(path: string): Promise<void> {
  await check(binding.subvolCreate(dirname(path), basename(path)), 'ioctl_btrfs_subvol_create', path);
}

export async function subvolSnapshot(source: string, dest: string, readonly = false): Promise<void> {
  await check(
    binding.subvolSnapshot(source, dirname(dest), basename(dest), readonly),
    'ioctl_btrfs_snap_create',
    source,
    dest,
  );
}

export async function subvolDestroy(path: string): Promise<void> {
  await check(binding.subvolDestroy(dirname(path), basename(path)), 'ioctl_btrfs_snap_destroy', path);
}

export async function subvolIsReadonly(path: string): Promise<boolean> {
  return (await check(binding.subvolGetReadonly(path), 'ioctl_btrfs_subvol_getflags', path)) === 1;
}

export async function subvolSetReadonly(path: string, readonly: boolean): Promise<void> {
  await check(binding.subvolSetReadonly(path, readonly), 'ioctl_btrfs_subvol_setflags', path);
}
