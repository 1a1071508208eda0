/**
 * native: a full copy per snapshot (containerd's native snapshotter), the fallback that
 * works on any filesystem. <id>/fs holds the whole tree; a new snapshot starts as a copy
 * of its parent's (reflinked where the filesystem can), and every mount is a bind.
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Driver, Layout, SnapshotRef } from '../driver.js';
import { copyTree } from '../copy.js';
import type { Mount, Usage } from '../types.js';
import { diskUsage } from '../usage.js';

export class NativeDriver implements Driver {
  readonly name = 'native';

  constructor(private readonly layout: Layout) {}

  private fsPath(id: string): string {
    return join(this.layout.dir(id), 'fs');
  }

  async create(dir: string, s: SnapshotRef): Promise<void> {
    await mkdir(dir, { mode: 0o700 });
    if (s.parentIds.length > 0) {
      await copyTree(this.fsPath(s.parentIds[0]), join(dir, 'fs'));
    } else {
      await mkdir(join(dir, 'fs'), { mode: 0o755 });
      await chmod(join(dir, 'fs'), 0o755);
    }
  }

  async mounts(s: SnapshotRef): Promise<Mount[]> {
    return [{ type: 'bind', source: this.fsPath(s.id), options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }

  usage(s: SnapshotRef): Promise<Usage> {
    return diskUsage(this.fsPath(s.id));
  }

  async destroy(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}
