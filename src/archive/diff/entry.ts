// One entry of a layer diff, and how both differs build it from what scanDir saw.
// Both differs go through these helpers, so the same file yields the same tar header
// whichever differ found it.
import { TslayerError } from '../../errors.js';
import type { ScannedEntry } from '../../native/index.js';
import type { EntryType, TarHeader } from './header.js';

export interface DiffEntry {
  header: TarHeader;
  /** Absolute path to read a regular file's content from (when header.size > 0). */
  source?: string;
  /** dev:ino of a non-directory with more than one link: the writer turns repeats into hardlinks. */
  inode?: string;
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export const fileType = (mode: number): number => mode & S_IFMT;

const TYPES: Record<number, EntryType> = {
  [S_IFREG]: 'file',
  [S_IFDIR]: 'directory',
  [S_IFLNK]: 'symlink',
  [S_IFCHR]: 'char',
  [S_IFBLK]: 'block',
  [S_IFIFO]: 'fifo',
};

/** The tar type of a scanned entry, or undefined for what a tar cannot hold (sockets). */
export function entryType(e: ScannedEntry): EntryType | undefined {
  return TYPES[fileType(e.mode)];
}

/**
 * A name from the kernel as a string. Names that are not valid UTF-8 cannot travel
 * through our string paths unchanged, so they are refused rather than silently renamed.
 */
export function decodeName(raw: Buffer, where: string): string {
  const s = raw.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(raw)) {
    throw new TslayerError('NOT_IMPLEMENTED', `${where}/${s}: file name is not valid UTF-8; such names are not supported in a diff`);
  }
  return s;
}

/**
 * Xattrs that describe overlayfs' own bookkeeping (trusted.overlay.*, and user.overlay.*
 * on a userxattr mount) never go into a layer: they mean something only in that upper dir.
 */
export function layerXattrs(
  xattrs: ScannedEntry['xattrs'],
  userxattr = false,
): Array<[string, Buffer]> | undefined {
  if (!xattrs) return undefined;
  const kept = xattrs.filter(([k]) => !k.startsWith('trusted.overlay.') && !(userxattr && k.startsWith('user.overlay.')));
  return kept.length > 0 ? kept : undefined;
}

export function sameXattrs(a: ReadonlyArray<readonly [string, Buffer]> | undefined, b: typeof a): boolean {
  const x = a ?? [];
  const y = b ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    if (x[i]![0] !== y[i]![0] || !x[i]![1].equals(y[i]![1])) return false;
  }
  return true;
}

/**
 * The entry for a scanned file at `rel` (relative path, no trailing '/'), whose bytes live
 * at `abs`. `xattrs` are already filtered (layerXattrs).
 */
export function entryOf(
  rel: string,
  abs: string,
  e: ScannedEntry,
  type: EntryType,
  xattrs: Array<[string, Buffer]> | undefined,
): DiffEntry {
  const header: TarHeader = {
    name: type === 'directory' ? `${rel}/` : rel,
    type,
    mode: e.mode & 0o7777,
    uid: e.uid,
    gid: e.gid,
    size: type === 'file' ? e.size : 0,
    mtime: e.mtimeSec,
  };
  if (type === 'symlink') header.linkname = decodeName(e.link ?? Buffer.alloc(0), `symlink target of ${abs}`);
  if (type === 'char' || type === 'block') {
    header.devmajor = e.rdevMajor;
    header.devminor = e.rdevMinor;
  }
  if (xattrs) header.xattrs = xattrs;
  const entry: DiffEntry = { header };
  if (type === 'file' && e.size > 0) entry.source = abs;
  if (type !== 'directory' && e.nlink > 1) entry.inode = `${e.dev}:${e.ino}`;
  return entry;
}

/**
 * A whiteout for `name` in directory `relDir` ('' for the root). Fixed fields (mode 0,
 * owner 0, mtime 0) so that it is the same bytes whether overlay's 0/0 device or a
 * comparison found the deletion.
 */
export function whiteoutEntry(relDir: string, name: string): DiffEntry {
  return { header: markerHeader(join(relDir, WHITEOUT_PREFIX + name)) };
}

/** The marker that makes directory `relDir` opaque (hides everything below it in lower layers). */
export function opaqueEntry(relDir: string): DiffEntry {
  return { header: markerHeader(join(relDir, OPAQUE_MARKER)) };
}

function markerHeader(name: string): TarHeader {
  return { name, type: 'file', mode: 0, uid: 0, gid: 0, size: 0, mtime: 0 };
}

export function join(relDir: string, name: string): string {
  return relDir === '' ? name : `${relDir}/${name}`;
}

/**
 * A real file whose name starts with .wh. cannot be told apart from a whiteout by whoever
 * applies the layer: refuse it rather than write a layer that deletes something.
 */
export function checkRepresentable(rel: string, name: string, where: string): void {
  if (name.startsWith(WHITEOUT_PREFIX)) {
    throw new TslayerError(
      'UNSAFE_ENTRY',
      `${where}: "${rel}" starts with ${WHITEOUT_PREFIX}, which an OCI layer reserves for whiteouts; rename it before committing`,
    );
  }
}

/** Children of one directory in the order a layer lists them: bytewise by their tar name. */
export function byTarName<T extends { out: string }>(items: T[]): T[] {
  return items
    .map((it) => ({ it, key: Buffer.from(it.out, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map(({ it }) => it);
}
