/**
 * overlay: one directory per snapshot (containerd's overlay snapshotter).
 *
 *   <id>/fs     the snapshot's own files: an active snapshot's upperdir, a committed
 *               snapshot's layer (a lowerdir of its children)
 *   <id>/work   overlay's workdir (active snapshots only)
 *
 * Mounts: no parent -> a bind of fs; a view of one parent -> a read-only bind of the
 * parent's fs; otherwise overlay with the chain as lowerdir, top first (a view without
 * upperdir is read-only by nature). src/snapshot/mount.ts mounts any depth the kernel
 * takes (500 lowers) or refuses; it never truncates.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Driver, Layout, SnapshotRef } from '../driver.js';
import { escapeOverlayPath } from '../mount.js';
import type { Mount, Usage } from '../types.js';
import { diskUsage } from '../usage.js';

export class OverlayDriver implements Driver {
  readonly name = 'overlay';
  readonly quickCreate = true;
  /** containerd sets index=off where the kernel knows the option: lowers are shared by many mounts. */
  private readonly indexOff = existsSync('/sys/module/overlay/parameters/index');

  constructor(private readonly layout: Layout) {}

  upperPath(id: string): string {
    return join(this.layout.dir(id), 'fs');
  }

  private workPath(id: string): string {
    return join(this.layout.dir(id), 'work');
  }

  async create(dir: string, s: SnapshotRef): Promise<void> {
    await mkdir(dir, { mode: 0o700 });
    await mkdir(join(dir, 'fs'), { mode: 0o755 });
    await chmod(join(dir, 'fs'), 0o755); // whatever the umask
    if (s.kind === 'active') await mkdir(join(dir, 'work'), { mode: 0o711 });
    if (s.parentIds.length > 0) {
      // The merged root takes its owner and mode from the upper: keep the parent's.
      const st = await stat(this.upperPath(s.parentIds[0]));
      await chown(join(dir, 'fs'), st.uid, st.gid);
      await chmod(join(dir, 'fs'), st.mode & 0o7777);
    }
  }

  async mounts(s: SnapshotRef): Promise<Mount[]> {
    if (s.parentIds.length === 0) {
      return [{ type: 'bind', source: this.upperPath(s.id), options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
    }
    if (s.kind === 'view' && s.parentIds.length === 1) {
      return [{ type: 'bind', source: this.upperPath(s.parentIds[0]), options: ['ro', 'rbind'] }];
    }
    const options: string[] = [];
    if (this.indexOff) options.push('index=off');
    if (s.kind === 'active') {
      options.push(`workdir=${escapeOverlayPath(this.workPath(s.id))}`);
      options.push(`upperdir=${escapeOverlayPath(this.upperPath(s.id))}`);
    }
    options.push(`lowerdir=${s.parentIds.map((id) => escapeOverlayPath(this.upperPath(id))).join(':')}`);
    return [{ type: 'overlay', source: 'overlay', options }];
  }

  usage(s: SnapshotRef): Promise<Usage> {
    return diskUsage(this.upperPath(s.id));
  }

  async destroy(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}
