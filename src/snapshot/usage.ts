// Disk usage of a tree, as containerd's fs.DiskUsage: allocated blocks and inodes,
// counting each hard-linked inode once.
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Usage } from './types.js';

export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<bigint>();
  let size = 0;
  let inodes = 0;
  const visit = async (p: string): Promise<void> => {
    let st;
    try {
      st = await lstat(p, { bigint: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // removed while we walk an active tree
      throw e;
    }
    if (st.nlink > 1n) {
      if (seen.has(st.ino)) return;
      seen.add(st.ino);
    }
    inodes++;
    size += Number(st.blocks) * 512;
    if (st.isDirectory()) {
      let dir;
      try {
        dir = await opendir(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      for await (const e of dir) await visit(join(p, e.name));
    }
  };
  await visit(root);
  return { size, inodes };
}
