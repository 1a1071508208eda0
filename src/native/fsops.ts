// File calls Node's fs lacks (or only offers following symlinks), typed.
import { binding } from './binding.js';
import { check } from './errno.js';

const C = binding.fsConstants;

export const RESOLVE = {
  NO_XDEV: C.RESOLVE_NO_XDEV,
  NO_MAGICLINKS: C.RESOLVE_NO_MAGICLINKS,
  NO_SYMLINKS: C.RESOLVE_NO_SYMLINKS,
  BENEATH: C.RESOLVE_BENEATH,
  IN_ROOT: C.RESOLVE_IN_ROOT,
} as const;

export const O = {
  RDONLY: C.O_RDONLY,
  WRONLY: C.O_WRONLY,
  RDWR: C.O_RDWR,
  CREAT: C.O_CREAT,
  EXCL: C.O_EXCL,
  TRUNC: C.O_TRUNC,
  PATH: C.O_PATH,
  DIRECTORY: C.O_DIRECTORY,
  NOFOLLOW: C.O_NOFOLLOW,
  CLOEXEC: C.O_CLOEXEC,
} as const;

export const RENAME = { NOREPLACE: C.RENAME_NOREPLACE, EXCHANGE: C.RENAME_EXCHANGE, WHITEOUT: C.RENAME_WHITEOUT } as const;
export const LOCK = { SH: C.LOCK_SH, EX: C.LOCK_EX, NB: C.LOCK_NB, UN: C.LOCK_UN } as const;
export const S_IF = { CHR: C.S_IFCHR, BLK: C.S_IFBLK, FIFO: C.S_IFIFO, REG: C.S_IFREG } as const;
export const AT_FDCWD = C.AT_FDCWD;

/** mknod(path, mode incl. S_IF* type bits, major, minor). */
export async function mknod(path: string, mode: number, major = 0, minor = 0): Promise<void> {
  await check(binding.mknod(path, mode, major, minor), 'mknod', path);
}

/** An overlayfs whiteout: a character device 0/0. */
export async function mkWhiteout(path: string): Promise<void> {
  await mknod(path, S_IF.CHR | 0o000, 0, 0);
}

export async function lchown(path: string, uid: number, gid: number): Promise<void> {
  await check(binding.lchown(path, uid, gid), 'lchown', path);
}

/** Sets atime and mtime (nanoseconds as bigint) without following a final symlink. */
export async function lutimesNs(path: string, atimeNs: bigint, mtimeNs: bigint): Promise<void> {
  const [aSec, aNsec] = splitNs(atimeNs);
  const [mSec, mNsec] = splitNs(mtimeNs);
  await check(binding.lutimes(path, aSec, aNsec, mSec, mNsec), 'utimensat', path);
}

/** Sets atime and mtime (Date or seconds) without following a final symlink. */
export async function lutimes(path: string, atime: Date | number, mtime: Date | number): Promise<void> {
  await lutimesNs(path, toNs(atime), toNs(mtime));
}

// (seconds, nanoseconds) with 0 <= nanoseconds < 1e9, as utimensat requires, also before 1970.
function splitNs(ns: bigint): [number, number] {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    nsec += 1_000_000_000n;
    sec -= 1n;
  }
  return [Number(sec), Number(nsec)];
}

// Exact for Dates (whole ms) and whole seconds; a fractional second is rounded to the ns.
// (Multiplying a current time in ms by 1e6 as a double would lose the low digits.)
function toNs(t: Date | number): bigint {
  if (t instanceof Date) return BigInt(t.getTime()) * 1_000_000n;
  const sec = Math.floor(t);
  return BigInt(sec) * 1_000_000_000n + BigInt(Math.round((t - sec) * 1e9));
}

export interface OpenHow {
  flags: number;
  mode?: number;
  resolve?: number;
}

/** openat2(2): `dirfd` may be AT_FDCWD. Returns an fd the caller must close (fs.close works). */
export async function openat2(dirfd: number, path: string, how: OpenHow): Promise<number> {
  return check(binding.openat2(dirfd, path, how.flags, how.mode ?? 0, how.resolve ?? 0), 'openat2', path);
}

export async function renameat2(oldpath: string, newpath: string, flags = 0): Promise<void> {
  await check(binding.renameat2(AT_FDCWD, oldpath, AT_FDCWD, newpath, flags), 'renameat2', oldpath, newpath);
}

/** Makes `destFd` share all of `srcFd`'s extents (reflink). */
export async function ficlone(destFd: number, srcFd: number): Promise<void> {
  await check(binding.ficlone(destFd, srcFd), 'ioctl_ficlone');
}

export async function syncfs(fd: number): Promise<void> {
  await check(binding.syncfs(fd), 'syncfs');
}

export async function flock(fd: number, op: number): Promise<void> {
  await check(binding.flock(fd, op), 'flock');
}
