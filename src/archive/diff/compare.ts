// The compare differ: for drivers whose active snapshot is a whole tree (btrfs, devmapper,
// native), the change is what differs between a view of the parent and the active tree.
// Both are walked side by side, directory by directory:
//
//   only in the parent                 -> whiteout .wh.NAME
//   only in the active tree            -> the entry, and its whole subtree
//   in both, different type            -> the active entry (a directory replacing a
//                                         non-directory is marked opaque, as overlayfs does;
//                                         so is a re-created one where inodes tell: CompareOptions)
//   in both, same type                 -> the entry when its metadata differs, or when the
//                                         metadata cannot tell (see unchanged()); a
//                                         directory also when anything below it changed
//
// Output goes through the same entry helpers and tar writer as the overlay differ, so a
// change found by either gives the same bytes (save for what only overlayfs records:
// a directory removed and re-created is opaque there, and whiteouts per child here).
//
// The parent and active trees are walked through read-only mounts in a scratch
// directory; a bind mount's source is read directly.
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { mkdir, mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { Readable } from 'node:stream';
import { TslayerError } from '../../errors.js';
import { MS, mount, scanDir, type ScannedEntry } from '../../native/index.js';
import { mountAll, unmountAll } from '../../snapshot/mount.js';
import type { Mount } from '../../snapshot/types.js';
import {
  byTarName,
  checkRepresentable,
  decodeName,
  entryOf,
  entryType,
  fileType,
  join,
  layerXattrs,
  opaqueEntry,
  sameXattrs,
  whiteoutEntry,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFREG,
  type DiffEntry,
} from './entry.js';
import type { DiffRequest, Differ } from './types.js';
import { tarStream } from './writer.js';

export interface CompareOptions {
  /**
   * The active tree was made from the parent by a snapshot that keeps inode numbers
   * (btrfs subvolume snapshots, devmapper thin snapshots), so a directory whose inode
   * number changed was removed and re-created (or replaced): it is written as overlayfs
   * writes it, opaque with its whole new content, rather than as a whiteout per old child.
   * Not for trees copied file by file (native), where every inode number is new.
   */
  inodesPreserved?: boolean;
}

export class CompareDiffer implements Differ {
  readonly kind = 'compare' as const;
  readonly needsParentView = true;

  constructor(private readonly opts: CompareOptions = {}) {}

  diff(req: DiffRequest): Readable {
    const scratch: Scratch = { mounted: [] };
    // The trees stay mounted until the tar is written: contents are read after listing.
    const opts = this.opts;
    const entries = (async function* () {
      scratch.dir = await mkdtemp(joinPath(req.tmpDir ?? tmpdir(), 'tslayer-diff-'));
      const active = await readOnlyDir(req.upper, joinPath(scratch.dir, 'active'), scratch.mounted);
      const parent = req.lower ? await readOnlyDir(req.lower, joinPath(scratch.dir, 'parent'), scratch.mounted) : undefined;
      yield* compareTrees(parent, active, opts);
    })();
    return tarStream(entries, req.stats, () => release(scratch));
  }
}

interface Scratch {
  dir?: string;
  mounted: string[];
}

async function release(scratch: Scratch): Promise<void> {
  for (const target of [...scratch.mounted].reverse()) await unmountAll(target);
  for (const target of scratch.mounted) await rmdir(target).catch(() => undefined);
  if (scratch.dir) await rmdir(scratch.dir).catch(() => undefined);
}

/**
 * A directory showing `mounts`: a bind mount's source as it is; anything else mounted at
 * `target` as described, then made read-only for this mountpoint only. Not mounted with
 * 'ro' directly: a filesystem already mounted read-write elsewhere (the active snapshot's
 * device, in use by a container) refuses a second, read-only superblock mount (EBUSY),
 * while a read-only bind of the same superblock is always possible.
 */
async function readOnlyDir(mounts: Mount[], target: string, mounted: string[]): Promise<string> {
  if (mounts.length === 1 && (mounts[0]!.type === 'bind' || mounts[0]!.options.includes('rbind') || mounts[0]!.options.includes('bind'))) {
    return mounts[0]!.source;
  }
  await mkdir(target);
  mounted.push(target);
  await mountAll(mounts, target);
  await mount('', target, 'none', MS.REMOUNT | MS.BIND | MS.RDONLY);
  return target;
}

/**
 * Entries that turn tree `parent` into tree `active` (parent undefined: an empty tree),
 * in layer order.
 */
export async function* compareTrees(parent: string | undefined, active: string, opts: CompareOptions = {}): AsyncGenerator<DiffEntry> {
  yield* await compareDir(parent, active, '', active, opts);
}

interface Item {
  out: string;
  entries: DiffEntry[];
}

// Returns (rather than yields) a directory's entries: whether a directory goes into the
// layer depends on what is found below it. Only changed entries are kept, metadata only.
async function compareDir(
  parentAbs: string | undefined,
  activeAbs: string,
  rel: string,
  root: string,
  opts: CompareOptions,
): Promise<DiffEntry[]> {
  const [before, after] = await Promise.all([parentAbs ? scanDir(parentAbs) : [], scanDir(activeAbs)]);
  const items: Item[] = [];
  let i = 0;
  let j = 0;
  while (i < before.length || j < after.length) {
    const order = i >= before.length ? 1 : j >= after.length ? -1 : Buffer.compare(before[i]!.name, after[j]!.name);
    if (order < 0) {
      const name = decodeName(before[i++]!.name, parentAbs!);
      items.push({ out: `.wh.${name}`, entries: [whiteoutEntry(rel, name)] });
      continue;
    }
    const a = after[j++]!;
    const b = order === 0 ? before[i++] : undefined;
    const name = decodeName(a.name, activeAbs);
    const type = entryType(a);
    if (type === undefined) {
      // A socket replaced something: the old entry must still go away.
      if (b) items.push({ out: `.wh.${name}`, entries: [whiteoutEntry(rel, name)] });
      continue;
    }
    const childRel = join(rel, name);
    const childAbs = `${activeAbs}/${name}`;
    const xattrs = layerXattrs(a.xattrs);
    const self = (): DiffEntry => {
      checkRepresentable(childRel, name, root);
      return entryOf(childRel, childAbs, a, type, xattrs);
    };
    if (type !== 'directory') {
      if (b && (await unchanged(b, a, `${parentAbs}/${name}`, childAbs))) continue;
      items.push({ out: name, entries: [self()] });
      continue;
    }
    const recreated = opts.inodesPreserved === true && b !== undefined && b.ino !== a.ino;
    const sameDir = b !== undefined && fileType(b.mode) === S_IFDIR && !recreated;
    const below = await compareDir(sameDir ? `${parentAbs}/${name}` : undefined, childAbs, childRel, root, opts);
    if (sameDir && below.length === 0 && sameMeta(b, a)) continue;
    const head = b && !sameDir ? [self(), opaqueEntry(childRel)] : [self()];
    items.push({ out: name, entries: [...head, ...below] });
  }
  return byTarName(items).flatMap((it) => it.entries);
}

/** Owner, permissions, type, mtime and xattrs: what both files and directories compare on. */
function sameMeta(b: ScannedEntry, a: ScannedEntry): boolean {
  return (
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.mtimeSec === b.mtimeSec &&
    a.mtimeNsec === b.mtimeNsec &&
    sameXattrs(layerXattrs(a.xattrs), layerXattrs(b.xattrs))
  );
}

/**
 * Whether a non-directory is the same in parent and active tree. Metadata decides, with
 * one doubt resolved by reading: a regular file whose mtime has no sub-second part may
 * have had its time set from a tar (whole seconds) and its content replaced within the
 * same second, so equal metadata there is confirmed by comparing the bytes (containerd's
 * rule). The link count counts too: a new hardlink to an old file puts both in the layer,
 * as overlayfs' copy-up does.
 */
async function unchanged(b: ScannedEntry, a: ScannedEntry, parentPath: string, activePath: string): Promise<boolean> {
  if (!sameMeta(b, a) || a.nlink !== b.nlink) return false;
  switch (fileType(a.mode)) {
    case S_IFLNK:
      return a.link !== undefined && b.link !== undefined && a.link.equals(b.link);
    case S_IFCHR:
    case S_IFBLK:
      return a.rdevMajor === b.rdevMajor && a.rdevMinor === b.rdevMinor;
    case S_IFREG:
      if (a.size !== b.size) return false;
      return a.mtimeNsec !== 0 || sameContent(parentPath, activePath, a.size);
    default:
      return true;
  }
}

function sameContent(p: string, q: string, size: number): boolean {
  const chunk = Math.min(size, 1 << 20) || 1;
  const x = Buffer.allocUnsafe(chunk);
  const y = Buffer.allocUnsafe(chunk);
  const fx = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const fy = openSync(q, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      for (let off = 0; ; ) {
        const n = readFull(fx, x, off);
        const m = readFull(fy, y, off);
        if (n !== m) return false;
        if (n === 0) return true;
        if (!x.subarray(0, n).equals(y.subarray(0, m))) return false;
        off += n;
      }
    } finally {
      closeSync(fy);
    }
  } catch (e) {
    throw new TslayerError('INTERNAL', `comparing ${p} with ${q}: ${(e as Error).message}`, { cause: e });
  } finally {
    closeSync(fx);
  }
}

function readFull(fd: number, buf: Buffer, pos: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, pos + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
