/**
 * The per-driver part of a snapshotter. Everything else — keys, kinds, parents, labels,
 * namespaces, ids, prepare/commit by rename, debris cleanup — is shared
 * (src/snapshot/snapshotter.ts), so a driver only turns ids into storage:
 *
 *   ROOT/snapshots/<driver>/<id>            a live snapshot's storage (layout.dir(id))
 *   ROOT/snapshots/<driver>/new-<pid>-<id>  being built by process <pid>; renamed to <id> when recorded
 *
 * What a driver owns inside `<id>` is its own business (overlay: fs/ and work/; btrfs:
 * a subvolume fs/; devmapper: a marker for device <id>). A btrfs driver is, in full:
 *   create:  parent ? subvolSnapshot(dir(parentIds[0])/fs, tmp/fs, kind === 'view') : subvolCreate(tmp/fs)
 *   mounts:  [{ type: 'bind', source: dir(id)/fs, options: [view ? 'ro' : 'rw', 'rbind'] }]
 *   seal:    subvolSetReadonly(dir(id)/fs, true)
 *   destroy: subvolDestroy(dir/fs), then rm dir
 */
import { join } from 'node:path';
import type { SnapshotRef } from './storage.js';
import type { Mount, Usage } from './types.js';

export type { SnapshotRef } from './storage.js';

/** Where the shared layer keeps each id's storage. */
export class Layout {
  constructor(readonly root: string) {}

  /** The storage of a recorded snapshot. */
  dir(id: string): string {
    return join(this.root, id);
  }

  /** Where a snapshot is built before it is recorded (and renamed to dir(id)). */
  buildDir(id: string, pid = process.pid): string {
    return join(this.root, `new-${pid}-${id}`);
  }

  /** Parses a directory entry of the root: a live/dead id, a build dir, or not ours. */
  static classify(name: string): { id: string } | { building: string; pid: number } | undefined {
    if (/^[0-9]+$/.test(name)) return { id: name };
    const m = /^new-([0-9]+)-([0-9]+)$/.exec(name);
    if (m) return { building: m[2], pid: Number(m[1]) };
    return undefined;
  }
}

export interface Driver {
  /** 'overlay', 'native', 'btrfs', 'devmapper': also the metadata and directory name. */
  readonly name: string;

  /**
   * True when create() is a handful of syscalls (mkdir, a btrfs snapshot ioctl): it then
   * runs inside the metadata transaction and prepare takes one transaction, not two.
   * Leave it unset when create() copies data.
   */
  readonly quickCreate?: boolean;

  /**
   * Builds the storage of new snapshot `s` at `dir` (which does not exist yet and lies
   * on the same filesystem as layout.dir(s.id), so it can be renamed there). The parent
   * chain (s.parentIds, nearest first) is committed and immutable. On failure the caller
   * destroys `dir`.
   */
  create(dir: string, s: SnapshotRef): Promise<void>;

  /** The mounts of an active or view snapshot. */
  mounts(s: SnapshotRef): Promise<Mount[]>;

  /** What `s` takes on disk (a committed snapshot is measured once and the result kept). */
  usage(s: SnapshotRef): Promise<Usage>;

  /** Optional: after `s` was recorded as committed (e.g. btrfs makes its subvolume read-only). */
  seal?(s: SnapshotRef): Promise<void>;

  /** Frees storage at `dir` (a removed snapshot or debris); must accept half-built and missing dirs. */
  destroy(dir: string): Promise<void>;

  /** Optional: debris outside the shared layout (e.g. thin devices) of ids not in `live`. */
  cleanup?(live: ReadonlySet<string>): Promise<void>;

  close?(): Promise<void>;
}
