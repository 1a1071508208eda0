// A port of containerd's continuity/fs/fstest: small appliers that change a tree, and a
// deep comparison of two trees (type, mode, owner, content, symlink target, xattrs and
// hard-link groups; times are not compared, the root directory itself is not either).
import { createHash } from 'node:crypto';
import { chmod, lchown, link, lstat, mkdir, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lgetxattr, llistxattr } from '../../src/native/index.js';
import { copyTree } from '../../src/snapshot/copy.js';

export type Applier = (root: string) => Promise<void>;

export const apply =
  (...as: Applier[]): Applier =>
  async (root) => {
    for (const a of as) await a(root);
  };

export const createFile =
  (name: string, content: string | Buffer, mode: number): Applier =>
  async (root) => {
    const p = join(root, name);
    await writeFile(p, content, { mode });
    await chmod(p, mode);
  };

export const createDir =
  (name: string, mode: number): Applier =>
  async (root) => {
    const p = join(root, name);
    await mkdir(p, { recursive: true, mode });
    await chmod(p, mode);
  };

export const removeAll =
  (name: string): Applier =>
  (root) =>
    rm(join(root, name), { recursive: true, force: true });

export const chown =
  (name: string, uid: number, gid: number): Applier =>
  (root) =>
    lchown(join(root, name), uid, gid);

export const hardlink =
  (oldname: string, newname: string): Applier =>
  (root) =>
    link(join(root, oldname), join(root, newname));

export const createSymlink =
  (target: string, name: string): Applier =>
  (root) =>
    symlink(target, join(root, name));

/**
 * rename(2), and what mv(1) does when it fails with EXDEV: overlayfs (without
 * redirect_dir, which containerd and tslayer leave off so layers stay plain trees)
 * refuses to rename a directory that comes from a lower layer; mv copies and removes.
 */
export const renamePath =
  (oldname: string, newname: string): Applier =>
  async (root) => {
    const from = join(root, oldname);
    const to = join(root, newname);
    try {
      await rename(from, to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      await copyTree(from, to);
      await rm(from, { recursive: true });
    }
  };

interface Entry {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  digest?: string;
  target?: string;
  xattrs: Record<string, string>;
  ino: bigint;
}

async function describeEntry(p: string): Promise<{ e: Entry; dir: boolean }> {
  const st = await lstat(p, { bigint: true });
  const xattrs: Record<string, string> = {};
  for (const x of (await llistxattr(p)).sort()) {
    if (x.startsWith('trusted.overlay.')) continue;
    xattrs[x] = (await lgetxattr(p, x)).toString('base64');
  }
  const e: Entry = {
    type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other',
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    xattrs,
    ino: st.ino,
  };
  if (st.isFile()) {
    e.size = Number(st.size);
    e.digest = createHash('sha256').update(await readFile(p)).digest('hex');
  } else if (st.isSymbolicLink()) e.target = await readlink(p);
  else if (!st.isDirectory()) e.size = Number(st.rdev);
  return { e, dir: st.isDirectory() };
}

async function manifest(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort();
    // One directory's entries at once: the syscalls overlap in the thread pool.
    const described = await Promise.all(names.map((n) => describeEntry(join(root, rel, n))));
    for (const [i, name] of names.entries()) {
      const r = rel ? `${rel}/${name}` : name;
      out.set(r, described[i].e);
      if (described[i].dir) await walk(r);
    }
  };
  await walk('');
  return out;
}

/** Hard-link groups: for each non-directory path, the sorted paths sharing its inode. */
function linkGroups(m: Map<string, Entry>): Map<string, string> {
  const byIno = new Map<bigint, string[]>();
  for (const [p, e] of m) if (e.type !== 'dir') byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), p]);
  const out = new Map<string, string>();
  for (const paths of byIno.values()) for (const p of paths) out.set(p, paths.sort().join(' '));
  return out;
}

/** Throws an Error listing the differences between two trees. */
export async function checkDirectoryEqual(d1: string, d2: string): Promise<void> {
  const [m1, m2] = await Promise.all([manifest(d1), manifest(d2)]);
  const [l1, l2] = [linkGroups(m1), linkGroups(m2)];
  const diffs: string[] = [];
  for (const [p, a] of m1) {
    const b = m2.get(p);
    if (!b) {
      diffs.push(`- ${p}`);
      continue;
    }
    const { ino: _i1, ...ea } = a;
    const { ino: _i2, ...eb } = b;
    if (JSON.stringify(ea) !== JSON.stringify(eb)) diffs.push(`~ ${p}: ${JSON.stringify(ea)} != ${JSON.stringify(eb)}`);
    else if (l1.get(p) !== l2.get(p)) diffs.push(`~ ${p}: hard links [${l1.get(p)}] != [${l2.get(p)}]`);
  }
  for (const p of m2.keys()) if (!m1.has(p)) diffs.push(`+ ${p}`);
  if (diffs.length > 0) {
    throw new Error(`directory diff between ${d1} and ${d2}:\n  ${diffs.slice(0, 20).join('\n  ')}`);
  }
}

/** Applies `a` to a fresh directory and compares `root` with it. */
export async function checkDirectoryEqualWithApplier(root: string, a: Applier, scratch: string): Promise<void> {
  const dir = join(scratch, `applied-${Math.random().toString(36).slice(2)}`);
  await mkdir(dir);
  try {
    await a(dir);
    await checkDirectoryEqual(dir, root);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
