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
  /** st_dev and st_ino (as numbers: exact below 2^53, which inode numbers stay under in practice). */
  dev: number;
  ino: number;
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

interface RawScan {
  count: number;
  names: Buffer;
  nums: Float64Array;
  links: Buffer[];
  xattrs: Array<Array<[string, Buffer]>>;
}

const FIELDS = 12;
const HAS_LINK = 1;
const HAS_XATTRS = 2;

/**
 * Lists `dir` (which must be a directory, not a symlink to one). Entries that vanish
 * while being read are left out (the tree may be live). Errors are fs-shaped.
 */
export async function scanDir(dir: string, opts: { xattrs?: boolean } = {}): Promise<ScannedEntry[]> {
  const err = new Error();
  const r = (await binding.scanDir(dir, opts.xattrs ?? true)) as RawScan | RawFailure;
  if ('errno' in r) throw sysError(err, r.errno, r.syscall, r.path.toString('utf8'));
  const out: ScannedEntry[] = new Array(r.count);
  let start = 0;
  let nl = 0;
  let nx = 0;
  for (let i = 0; i < r.count; i++) {
    const end = r.names.indexOf(0, start);
    const f = i * FIELDS;
    const n = r.nums;
    const flags = n[f + 11]!;
    const e: ScannedEntry = {
      name: r.names.subarray(start, end),
      mode: n[f]!,
      uid: n[f + 1]!,
      gid: n[f + 2]!,
      size: n[f + 3]!,
      mtimeSec: n[f + 4]!,
      mtimeNsec: n[f + 5]!,
      dev: n[f + 6]!,
      ino: n[f + 7]!,
      nlink: n[f + 8]!,
      rdevMajor: n[f + 9]!,
      rdevMinor: n[f + 10]!,
    };
    if (flags & HAS_LINK) e.link = r.links[nl++];
    if (flags & HAS_XATTRS) e.xattrs = r.xattrs[nx++];
    out[i] = e;
    start = end + 1;
  }
  return out;
}
