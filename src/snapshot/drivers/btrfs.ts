/**
 * btrfs: every snapshot is a btrfs subvolume (containerd's btrfs snapshotter), made and
 * destroyed with the addon's ioctls, never the `btrfs` binary.
 *
 *   <id>/fs   the subvolume: the snapshot's whole tree
 *
 *   prepare on P   a writable snapshot of P's subvolume (copy-on-write: no data is copied,
 *                  and a later write into a big lower file copies one block, not the file)
 *   prepare/view   with no parent: an empty subvolume (mode 0755)
 *   view of P      a read-only snapshot of P's subvolume
 *   commit         the subvolume is made read-only (seal)
 *   remove         the subvolume is destroyed (the shared layer refuses while children exist)
 *   mounts         a bind mount of <id>/fs, 'ro' for a view (whose subvolume is read-only
 *                  too, so it stays read-only however it is mounted)
 *
 * A layer is applied into the bind mount's source (src/snapshot/apply.ts, mode 'remove'):
 * a whiteout deletes the lower entry for real and an opaque marker empties the directory;
 * btrfs trees carry no overlay markers. Commit's differ compares the parent with the
 * active tree (src/archive/diff differFor: every driver but overlay).
 *
 * The driver root must be on btrfs (snapshots only work within one filesystem); the
 * constructor checks and says what it found otherwise.
 */
import { chmod, lstat, mkdir, opendir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../../errors.js';
import { subvolCreate, subvolDestroy, subvolIsReadonly, subvolSetReadonly, subvolSnapshot } from '../../native/index.js';
import type { Driver, Layout, SnapshotRef } from '../driver.js';
import type { Mount, Usage } from '../types.js';
import { requireBtrfs } from './btrfs-fs.js';
import { diffUsage, qgroupExclusive } from './btrfs-usage.js';

/** A subvolume's root directory always has this inode number (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOL_ROOT_INO = 256;

export class BtrfsDriver implements Driver {
  readonly name = 'btrfs';
  /** create() is one snapshot ioctl (or a subvolume create): it runs inside the transaction. */
  readonly quickCreate = true;

  constructor(private readonly layout: Layout) {
    requireBtrfs(layout.root);
  }

  /** The subvolume holding snapshot `id`'s tree. */
  fsPath(id: string): string {
    return join(this.layout.dir(id), 'fs');
  }

  async create(dir: string, s: SnapshotRef): Promise<void> {
    await mkdir(dir, { mode: 0o700 });
    const fs = join(dir, 'fs');
    if (s.parentIds.length > 0) {
      await subvolSnapshot(this.fsPath(s.parentIds[0]!), fs, s.kind === 'view');
      return;
    }
    await subvolCreate(fs);
    await chmod(fs, 0o755); // the kernel applies the umask to a new subvolume's root
    if (s.kind === 'view') await subvolSetReadonly(fs, true);
  }

  async mounts(s: SnapshotRef): Promise<Mount[]> {
    return [{ type: 'bind', source: this.fsPath(s.id), options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }

  async seal(s: SnapshotRef): Promise<void> {
    await subvolSetReadonly(this.fsPath(s.id), true);
  }

  /**
   * Exclusive bytes, as containerd's btrfs snapshotter reports them. Active snapshots and
   * views are leaves (nothing is ever snapshotted from them), so their qgroup's exclusive
   * bytes are exactly their own change; that is used when quotas are on. A committed
   * snapshot's exclusive bytes shrink as children share them, and the shared layer keeps
   * the first measure of a committed snapshot for good, so those are measured by the walk
   * against the parent, which does not depend on what else exists. Inodes always come
   * from the walk (qgroups count bytes only).
   */
  async usage(s: SnapshotRef): Promise<Usage> {
    const fs = this.fsPath(s.id);
    const parent = s.parentIds.length > 0 ? this.fsPath(s.parentIds[0]!) : undefined;
    const walked = await diffUsage(parent, fs);
    if (s.kind === 'committed') return walked;
    const exclusive = await qgroupExclusive(fs);
    return exclusive === undefined ? walked : { size: exclusive, inodes: walked.inodes };
  }

  async destroy(dir: string): Promise<void> {
    await destroyTree(join(dir, 'fs'));
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/**
 * Frees `path` whatever it is: a subvolume (destroyed, with any subvolumes a container
 * made inside it), a plain directory left by a half-built snapshot, or nothing.
 */
async function destroyTree(path: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return;
    throw e;
  }
  if (!st.isDirectory() || st.ino !== SUBVOL_ROOT_INO) {
    await rm(path, { recursive: true, force: true, maxRetries: 3 });
    return;
  }
  try {
    await subvolDestroy(path);
  } catch (e) {
    if (!isErrno(e, 'ENOTEMPTY')) throw e;
    // Subvolumes nested inside (made by whatever ran in the snapshot) block the destroy.
    if (await subvolIsReadonly(path)) await subvolSetReadonly(path, false);
    await destroyNested(path, st.dev);
    await subvolDestroy(path);
  }
}

/** Destroys every subvolume below `dir` (which is in the subvolume with device `dev`). */
async function destroyNested(dir: string, dev: number): Promise<void> {
  for await (const e of await opendir(dir)) {
    if (!e.isDirectory()) continue;
    const p = join(dir, e.name);
    const st = await lstat(p);
    if (st.ino === SUBVOL_ROOT_INO && st.dev !== dev) await destroyTree(p);
    else await destroyNested(p, dev);
  }
}
