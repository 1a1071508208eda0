// mount(2)/umount2(2) and the new mount API, typed.
import { binding } from './binding.js';
import { check, sysError } from './errno.js';

export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  REMOUNT: 0x20,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
} as const;

export const MNT = { FORCE: 1, DETACH: 2, EXPIRE: 4, NOFOLLOW: 8 } as const;

export const FSCONFIG = {
  SET_FLAG: 0,
  SET_STRING: 1,
  SET_BINARY: 2,
  SET_PATH: 3,
  SET_PATH_EMPTY: 4,
  SET_FD: 5,
  CMD_CREATE: 6,
  CMD_RECONFIGURE: 7,
} as const;

export const FSOPEN_CLOEXEC = 1;
export const FSMOUNT_CLOEXEC = 1;
export const MOUNT_ATTR = { RDONLY: 0x1, NOSUID: 0x2, NODEV: 0x4, NOEXEC: 0x8 } as const;
export const MOVE_MOUNT = { F_EMPTY_PATH: 0x4 } as const;
export const OPEN_TREE = { CLONE: 1, CLOEXEC: 0o2000000 } as const;
export const AT_RECURSIVE = 0x8000;
export const AT_EMPTY_PATH = 0x1000;
const AT_FDCWD = -100;

export async function mount(
  source: string,
  target: string,
  fstype: string,
  flags = 0,
  data: string | null = null,
): Promise<void> {
  await check(binding.mount(source, target, fstype, flags, data), 'mount', target);
}

export async function umount(target: string, flags = 0): Promise<void> {
  await check(binding.umount2(target, flags), 'umount2', target);
}

export function fsopen(fsname: string, flags = FSOPEN_CLOEXEC): number {
  const err = new Error();
  const r = binding.fsopen(fsname, flags);
  if (r < 0) throw sysError(err, r, 'fsopen', fsname);
  return r;
}

export async function fsconfigSetString(fd: number, key: string, value: string): Promise<void> {
  await check(binding.fsconfig(fd, FSCONFIG.SET_STRING, key, value, 0), 'fsconfig', `${key}=${value}`);
}

export async function fsconfigSetFlag(fd: number, key: string): Promise<void> {
  await check(binding.fsconfig(fd, FSCONFIG.SET_FLAG, key, null, 0), 'fsconfig', key);
}

export async function fsconfigCreate(fd: number): Promise<void> {
  await check(binding.fsconfig(fd, FSCONFIG.CMD_CREATE, null, null, 0), 'fsconfig', 'create');
}

export async function fsmount(fd: number, attrs = 0, flags = FSMOUNT_CLOEXEC): Promise<number> {
  return check(binding.fsmount(fd, flags, attrs), 'fsmount');
}

/** Attaches a detached mount fd (from fsmount/open_tree) at `target`. */
export async function moveMountFd(mountFd: number, target: string): Promise<void> {
  await check(binding.moveMount(mountFd, '', AT_FDCWD, target, MOVE_MOUNT.F_EMPTY_PATH), 'move_mount', target);
}

export async function openTree(path: string, flags = OPEN_TREE.CLONE | OPEN_TREE.CLOEXEC): Promise<number> {
  return check(binding.openTree(AT_FDCWD, path, flags), 'open_tree', path);
}
