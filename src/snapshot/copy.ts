/**
 * A faithful tree copy for the native driver: file data (reflinked where the filesystem
 * can), owners, modes incl. setuid/setgid/sticky, nanosecond times, xattrs, symlinks,
 * device nodes, fifos and hard links (copied as links). Sockets are skipped, as in
 * containerd's continuity. Directory times are set after their contents are copied.
 */
import { constants } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readdir, readlink, symlink } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { lchown, lgetxattr, llistxattr, lsetxattr, lutimesNs, mknod } from '../native/index.js';

/** At most this many file copies in flight (the tree walk itself is not limited). */
const PARALLEL = 16;

export async function copyTree(src: string, dst: string): Promise<void> {
  const c = new Copier();
  const st = await lstat(src, { bigint: true });
  await c.entry(src, dst, st);
}

class Copier {
  private readonly links = new Map<bigint, Promise<string>>();
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  private async limit<T>(fn: () => Promise<T>): Promise<T> {
    while (this.running >= PARALLEL) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  async entry(src: string, dst: string, st: BigIntStats): Promise<void> {
    if (st.isDirectory()) return this.dir(src, dst, st);
    if (st.isSocket()) return;
    if (st.nlink > 1n) {
      const first = this.links.get(st.ino);
      if (first) {
        await link(await first, dst);
        return;
      }
      const p = this.limit(() => this.leaf(src, dst, st)).then(() => dst);
      this.links.set(st.ino, p);
      await p;
      return;
    }
    await this.limit(() => this.leaf(src, dst, st));
  }

  private async dir(src: string, dst: string, st: BigIntStats): Promise<void> {
    await mkdir(dst, { mode: 0o700 });
    const names = await readdir(src);
    await Promise.all(
      names.map(async (name) => {
        const s = join(src, name);
        await this.entry(s, join(dst, name), await lstat(s, { bigint: true }));
      }),
    );
    await this.meta(src, dst, st);
  }

  private async leaf(src: string, dst: string, st: BigIntStats): Promise<void> {
    if (st.isFile()) await copyFile(src, dst, constants.COPYFILE_FICLONE);
    else if (st.isSymbolicLink()) await symlink(await readlink(src), dst);
    else {
      const rdev = st.rdev;
      const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
      await mknod(dst, Number(st.mode), major, minor);
    }
    await this.meta(src, dst, st);
  }

  /** Owner, then mode (chown clears setuid bits), xattrs, and times last. */
  private async meta(src: string, dst: string, st: BigIntStats): Promise<void> {
    await lchown(dst, Number(st.uid), Number(st.gid));
    if (!st.isSymbolicLink()) await chmod(dst, Number(st.mode) & 0o7777);
    for (const name of await llistxattr(src)) {
      await lsetxattr(dst, name, await lgetxattr(src, name));
    }
    await lutimesNs(dst, st.atimeNs, st.mtimeNs);
  }
}
