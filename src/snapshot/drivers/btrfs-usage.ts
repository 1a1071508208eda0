/**
 * Disk usage of a btrfs snapshot: what it holds that its parent does not.
 *
 *   qgroupExclusive(fs)   bytes only this subvolume references, from the kernel's quota
 *                         groups (/sys/fs/btrfs/<fsid>/qgroups/0_<id>/exclusive). Exact to
 *                         the block: a one-byte write into a 1 GB lower file costs a block,
 *                         not a gigabyte. Only when quotas are on (`btrfs quota enable`)
 *                         and consistent; undefined otherwise.
 *   diffUsage(parent, fs) containerd's fs.DiffUsage: the allocated blocks and inodes of
 *                         every entry of `fs` that is new or changed against `parent`
 *                         (a whole file counts once it changed at all).
 *
 * The walk is cheap because both trees are btrfs snapshots of one another: an entry the
 * child has not touched keeps its inode number, size and mtime, and those (one scanDir per
 * directory, no per-file syscalls) are what decide "unchanged". Only changed entries are
 * lstat'ed for their block count.
 */
import { lstat, open, readFile } from 'node:fs/promises';
import { isErrno } from '../../errors.js';
import { scanDir, subvolInfo, syncfs, type ScannedEntry } from '../../native/index.js';
import type { Usage } from '../types.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

async function readSys(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return undefined;
    throw e;
  }
}

/**
 * Exclusive bytes of the subvolume at `fs` from its qgroup, or undefined when quotas are
 * off or marked inconsistent (a rescan is due). The filesystem is synced first: qgroup
 * counters are brought up to date at transaction commit.
 */
export async function qgroupExclusive(fs: string): Promise<number | undefined> {
  const { id, fsid } = await subvolInfo(fs);
  const qgroups = `/sys/fs/btrfs/${fsid}/qgroups`;
  if ((await readSys(`${qgroups}/enabled`)) !== '1') return undefined;
  if ((await readSys(`${qgroups}/inconsistent`)) === '1') return undefined;
  const fh = await open(fs, 'r');
  try {
    await syncfs(fh.fd);
  } finally {
    await fh.close();
  }
  const exclusive = await readSys(`${qgroups}/0_${id}/exclusive`);
  return exclusive === undefined ? undefined : Number(exclusive);
}

/** Blocks and inodes of what `fs` adds or changes against `parent` (undefined: everything). */
export async function diffUsage(parent: string | undefined, fs: string): Promise<Usage> {
  const seen = new Set<bigint>();
  const usage: Usage = { size: 0, inodes: 0 };

  const count = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return; // an active tree changes while we walk it
      throw e;
    }
    if (st.nlink > 1n) {
      if (seen.has(st.ino)) return;
      seen.add(st.ino);
    }
    usage.inodes++;
    usage.size += Number(st.blocks) * 512;
  };

  const walk = async (before: string | undefined, after: string): Promise<void> => {
    let b: ScannedEntry[];
    let a: ScannedEntry[];
    try {
      [b, a] = await Promise.all([before ? scanDir(before, { xattrs: false }) : [], scanDir(after, { xattrs: false })]);
    } catch (e) {
      if (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR')) return;
      throw e;
    }
    // Keyed by the name's bytes (latin1 maps bytes 1:1): names need not be UTF-8.
    const old = new Map(b.map((e) => [e.name.toString('latin1'), e]));
    for (const e of a) {
      const o = old.get(e.name.toString('latin1'));
      const name = e.name.toString();
      if (!o || !sameEntry(o, e)) await count(`${after}/${name}`);
      if ((e.mode & S_IFMT) === S_IFDIR) {
        const sameDir = before !== undefined && o !== undefined && (o.mode & S_IFMT) === S_IFDIR;
        await walk(sameDir ? `${before}/${name}` : undefined, `${after}/${name}`);
      }
    }
  };

  // The root itself counts when it is new or changed, as any other directory.
  const [rootB, rootA] = await Promise.all([parent ? lstat(parent, { bigint: true }) : undefined, lstat(fs, { bigint: true })]);
  if (!rootB || rootB.mode !== rootA.mode || rootB.uid !== rootA.uid || rootB.gid !== rootA.gid || rootB.mtimeNs !== rootA.mtimeNs) {
    await count(fs);
  }
  await walk(parent, fs);
  return usage;
}

/** The same inode, untouched: snapshots keep inode numbers, a change moves mtime or size. */
function sameEntry(b: ScannedEntry, a: ScannedEntry): boolean {
  return (
    a.ino === b.ino &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.size === b.size &&
    a.nlink === b.nlink &&
    a.mtimeSec === b.mtimeSec &&
    a.mtimeNsec === b.mtimeNsec
  );
}
