// Looking at images in a tslayer store from a test: the merged tree of an image (a
// read-only view of its top snapshot, mounted for real), the snapshots and blobs the
// store holds, and umoci's unpack of the same image to compare against.
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { resolveLocalImage } from '../../src/image/local.js';
import { mountAll, openSnapshotter, unmountAll, type DriverName, type Info } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';
import { makeTmpDir, removeTmpDir } from './tmp.js';

const execFileP = promisify(execFile);

/** Runs `fn` with image `ref`'s merged tree mounted read-only, then unmounts and drops the view. */
export async function withImageMounted<T>(
  root: string,
  ref: string,
  fn: (dir: string) => Promise<T>,
  driver: DriverName = 'overlay',
): Promise<T> {
  const store = await Store.open(root);
  const sn = await openSnapshotter(store, driver);
  const image = await resolveLocalImage(store, ref);
  const top = image.chainIds[image.chainIds.length - 1];
  if (top === undefined) throw new Error(`image ${ref} has no layers`);
  const dir = await makeTmpDir('image-view');
  const key = `test-view-${process.pid}-${Date.now()}`;
  const target = join(dir, 'mnt');
  try {
    await mkdir(target);
    const mounts = await sn.view(key, top);
    await mountAll(mounts, target);
    try {
      return await fn(target);
    } finally {
      await unmountAll(target);
    }
  } finally {
    await sn.remove(key).catch(() => {});
    await sn.close();
    await removeTmpDir(dir);
  }
}

/** Every snapshot of the default namespace of `driver` (overlay unless told). */
export async function listSnapshots(root: string, driver: DriverName = 'overlay'): Promise<Info[]> {
  const store = await Store.open(root);
  const sn = await openSnapshotter(store, driver, { cleanup: false });
  try {
    const out: Info[] = [];
    await sn.walk((i) => void out.push(i));
    return out;
  } finally {
    await sn.close();
  }
}

export async function hasBlob(root: string, digest: string): Promise<boolean> {
  const store = await Store.open(root);
  return store.content.has(digest as `sha256:${string}`);
}

/** `umoci unpack` of `layoutDir:tag` into a fresh directory; returns the bundle's rootfs and a cleanup. */
export async function umociUnpack(layoutDir: string, tag: string): Promise<{ rootfs: string; dispose: () => Promise<void> }> {
  const dir = await makeTmpDir('umoci');
  const bundle = join(dir, 'bundle');
  try {
    await execFileP('umoci', ['unpack', '--image', `${layoutDir}:${tag}`, bundle], { maxBuffer: 16 << 20 });
  } catch (e) {
    await removeTmpDir(dir);
    const err = e as { stderr?: string; message: string };
    throw new Error(`umoci unpack ${layoutDir}:${tag} failed: ${err.stderr || err.message}`);
  }
  return { rootfs: join(bundle, 'rootfs'), dispose: () => removeTmpDir(dir) };
}

/**
 * A listing of a tree for comparisons: relative path → "type mode uid:gid detail" (file
 * content hash, symlink target). Times are left out: they legitimately differ.
 */
export async function treeListing(root: string): Promise<Map<string, string>> {
  const { lstat, readdir, readFile, readlink } = await import('node:fs/promises');
  const { createHash } = await import('node:crypto');
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(root, p));
      const mode = (st.mode & 0o7777).toString(8);
      const owner = `${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out.set(p, `dir ${mode} ${owner}`);
        await walk(p);
      } else if (st.isSymbolicLink()) {
        out.set(p, `symlink ${owner} -> ${await readlink(join(root, p))}`);
      } else if (st.isFile()) {
        const hash = createHash('sha256').update(await readFile(join(root, p))).digest('hex').slice(0, 16);
        out.set(p, `file ${mode} ${owner} ${st.size} ${hash}`);
      } else {
        out.set(p, `other ${st.mode.toString(8)} ${owner} ${st.rdev}`);
      }
    }
  };
  await walk('');
  return out;
}
