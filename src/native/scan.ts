// scanDir: a directory's entries with their lstat, symlink target and xattrs in one
// native call (see native/scan.cc for why), sorted bytewise by name.
import { binding } from './binding.js';
import { sysError } from './errno.js';

export interface ScannedEntry {
  /** The name as the kernel has it (bytes: names need not be UTF-8). */
  name: Buffer;
  /** st_mode: type bits and permissions. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  dev: bigint;
  ino: bigint;
  nlink: number;
  rdevMajor: number;
  rdevMinor: number;
  /** Symlink target bytes (symlinks only). */
  link?: Buffer;
  /** [name, value] sorted by name; absent when there are none (or withXattrs was false). */
  xattrs?: Array<[string, Buffer]>;
}

interface RawFailure {
  errno: number;
  syscall: string;
  path: Buffer;
}

/**
 * Lists `dir` (which must be a directory, not a symlink to one). Entries that vanish
 * while being read are left out (the tree may be live). Errors are fs-shaped.
 */
export async function scanDir(dir: string, opts: { xattrs?: boolean } = {}): Promise<ScannedEntry[]> {
  const err = new Error();
  const r = (await binding.scanDir(dir, opts.xattrs ?? true)) as ScannedEntry[] | RawFailure;
  if (Array.isArray(r)) return r;
  throw sysError(err, r.errno, r.syscall, r.path.toString('utf8'));
}
