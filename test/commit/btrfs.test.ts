// `tslayer commit` with --driver btrfs against the overlay driver: the same image pulled
// into two stores (overlay on the host's disk, btrfs on a loop file), mounted with the
// CLI, changed the same way, committed with the CLI. The btrfs driver's layer comes from
// the compare differ (parent view vs active tree), overlay's from its upper dir; for the
// same change both must be the same bytes: same diff id, same blob digest.
import assert from 'node:assert/strict';
import { appendFile, chmod, chown, link, lstat, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buffer } from 'node:stream/consumers';
import { createGunzip } from 'node:zlib';
import { lsetxattr, lutimesNs } from '../../src/native/index.js';
import { Store } from '../../src/store.js';
import { buildLayeredImage, ROUNDTRIP_BASE_LAYERS } from '../helpers/busybox.js';
import { runCli } from '../helpers/cli.js';
import { treeListing, withImageMounted } from '../helpers/images.js';
import { makeLoopFs, type LoopFs } from '../helpers/loop.js';
import { skopeo, startRegistry, type RunningRegistry } from '../helpers/registry.js';
import { readTar } from '../helpers/tarread.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

/** Every time the changes below touch is pinned to this, so both stores' changes are byte-identical. */
const PINNED = 1_750_000_000n * 1_000_000_000n + 250_000_000n;

/** mtime (ns) of every entry under `root`, by path. */
async function mtimes(root: string): Promise<Map<string, bigint>> {
  const out = new Map<string, bigint>();
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p, { bigint: true });
    out.set(p, st.mtimeNs);
    if (st.isDirectory()) for (const name of await readdir(p)) await visit(join(p, name));
  };
  await visit(root);
  return out;
}

/** Sets the times of every entry that is new or has a new mtime since `before` to PINNED. */
async function pinTimes(root: string, before: Map<string, bigint>): Promise<void> {
  for (const [p, t] of await mtimes(root)) {
    if (before.get(p) !== t) await lutimesNs(p, PINNED, PINNED);
  }
}

/** The change of the commit round trip (test/commit/roundtrip.test.ts) but for re-creating a directory. */
async function change(mnt: string): Promise<void> {
  await mkdir(join(mnt, 'new'));
  await writeFile(join(mnt, 'new/hello.txt'), 'hello from tslayer\n');
  await writeFile(join(mnt, 'etc/newfile'), 'new\n');
  await appendFile(join(mnt, 'etc/config'), 'changed=yes\n');
  await rm(join(mnt, 'data/del.txt'));
  await rm(join(mnt, 'deldir'), { recursive: true });
  for (const n of await readdir(join(mnt, 'refill'))) await rm(join(mnt, 'refill', n), { recursive: true });
  await writeFile(join(mnt, 'refill/c'), 'c\n');
  await chown(join(mnt, 'perm/file'), 1234, 5678);
  await chmod(join(mnt, 'perm/file'), 0o4750);
  await chmod(join(mnt, 'perm'), 0o700);
  await link(join(mnt, 'new/hello.txt'), join(mnt, 'new/hard'));
  await link(join(mnt, 'etc/config'), join(mnt, 'etc/config-link'));
  await symlink('../etc/config', join(mnt, 'new/link'));
  await rm(join(mnt, 'data/sl'));
  await symlink('/etc/newfile', join(mnt, 'data/sl'));
  await lsetxattr(join(mnt, 'new/hello.txt'), 'user.bin', Buffer.from([0, 0xff, 0x0a, 0x3d]));
  await lsetxattr(join(mnt, 'data/keep.txt'), 'user.note', Buffer.from('kept'));
}

/** A directory removed and made again, with new contents. */
async function recreate(mnt: string): Promise<void> {
  await rm(join(mnt, 'recreate'), { recursive: true });
  await mkdir(join(mnt, 'recreate'));
  await writeFile(join(mnt, 'recreate/only'), 'only\n');
}

interface Committed {
  diffId: string;
  layer: string;
  entries: number;
}

describe('commit with --driver btrfs gives overlay\'s layer', () => {
  let reg: RunningRegistry;
  let scratch: string;
  let btrfs: LoopFs;
  let base: string;
  const roots: Record<'overlay' | 'btrfs', string> = { overlay: '', btrfs: '' };
  const mounted: string[] = [];

  const cli = (driver: 'overlay' | 'btrfs', ...args: string[]) => runCli(['--root', roots[driver], '--driver', driver, ...args]);

  /** Mounts `base` as active snapshot `key` with both drivers, changes both with `fn`, pins times. */
  async function mountAndChange(key: string, fn: (mnt: string) => Promise<void>): Promise<void> {
    for (const driver of ['overlay', 'btrfs'] as const) {
      const target = join(scratch, `mnt-${driver}-${key}`);
      await mkdir(target);
      const r = await cli(driver, 'mount', base, target, '--name', key);
      assert.equal(r.code, 0, r.stderr);
      mounted.push(target);
      const before = await mtimes(target);
      await fn(target);
      await pinTimes(target, before);
    }
  }

  async function commit(driver: 'overlay' | 'btrfs', key: string, ref: string): Promise<Committed> {
    const r = await cli(driver, '--json', 'commit', key, ref);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { diffId: string; layer: { digest: string }; entries: number };
    return { diffId: out.diffId, layer: out.layer.digest, entries: out.entries };
  }

  /** The entries of a stored layer, for a readable message when the digests differ. */
  async function layerEntries(driver: 'overlay' | 'btrfs', digest: string): Promise<string[]> {
    const store = await Store.open(roots[driver]);
    const tar = await buffer(store.content.createReadStream(digest as `sha256:${string}`).pipe(createGunzip()));
    return readTar(tar).map((e) => `${e.typeflag} ${e.name} ${e.mode.toString(8)} ${e.uid}:${e.gid} ${e.size} ${e.mtime} ${e.linkname} ${[...e.xattrs.keys()].join(',')}`);
  }

  async function sameLayer(key: string, tag: string): Promise<Committed> {
    const o = await commit('overlay', key, `${reg.host}/changed:${tag}`);
    const b = await commit('btrfs', key, `${reg.host}/changed:${tag}`);
    if (b.diffId !== o.diffId) {
      assert.deepEqual(await layerEntries('btrfs', b.layer), await layerEntries('overlay', o.layer), 'layer entries');
    }
    assert.equal(b.diffId, o.diffId, 'same uncompressed layer (diff id)');
    assert.equal(b.layer, o.layer, 'same compressed blob');
    assert.equal(b.entries, o.entries);
    return b;
  }

  before(async () => {
    scratch = await makeTmpDir('commit-btrfs');
    btrfs = await makeLoopFs('btrfs', 1024 ** 3, { parent: scratch });
    roots.btrfs = join(btrfs.mountpoint, 'root');
    roots.overlay = join(scratch, 'overlay-root');
    reg = await startRegistry();
    base = `${reg.host}/base:1`;
    const layout = join(scratch, 'layout');
    await mkdir(join(scratch, 'umoci'));
    await buildLayeredImage(layout, 'base', join(scratch, 'umoci'), ROUNDTRIP_BASE_LAYERS);
    await skopeo(['copy', '--dest-tls-verify=false', '--quiet', `oci:${layout}:base`, `docker://${base}`]);
    for (const driver of ['overlay', 'btrfs'] as const) {
      const r = await cli(driver, 'pull', base);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  after(async () => {
    for (const target of mounted.reverse()) await runCli(['umount', target]).catch(() => undefined);
    await reg?.stop();
    try {
      await btrfs?.dispose();
    } finally {
      if (scratch) await removeTmpDir(scratch);
    }
  });

  it('the same change commits to the same layer digest as overlay, and the image mounts as the container view', async () => {
    await mountAndChange('work', change);
    const b = await sameLayer('work', '1');
    assert.ok(b.entries > 10);
    const view = await treeListing(join(scratch, 'mnt-btrfs-work'));
    const committed = await withImageMounted(roots.btrfs, `${reg.host}/changed:1`, (d) => treeListing(d), 'btrfs');
    assert.deepEqual(committed, view, 'the committed btrfs image is the container view');
    assert.deepEqual(committed, await treeListing(join(scratch, 'mnt-overlay-work')), 'and overlay\'s');
  });

  it('an untouched snapshot commits to the same empty layer as overlay', async () => {
    await mountAndChange('idle', async () => undefined);
    const b = await sameLayer('idle', 'empty');
    assert.equal(b.entries, 0);
  });

  it(
    'a directory removed and re-created commits to the same layer as overlay (opaque directory)',
    async () => {
      await mountAndChange('recreate', recreate);
      await sameLayer('recreate', 'recreate');
    },
  );
});
